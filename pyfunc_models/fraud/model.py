"""The served transaction classifiers: a feature pipeline behind the JSON codec.

One class serves both formats of a trained pipeline: the ONNX file (the served
default, ONNX Runtime) or the scikit-learn original (joblib).  Subclasses only
say how a row of class probabilities becomes an answer.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import numpy as np

from ..conventions import PROBABILITY_PREFIX
from ..codec import JsonCodecModel
from ..onnx_tabular import ONNX_ARTIFACT, OnnxTabular
from .features import table_to_columns, transactions_to_columns

PIPELINE_ARTIFACT = "pipeline"


def _frame_input(predict_proba: Callable) -> Callable:
    """scikit-learn pipelines select columns by name: give them a DataFrame."""
    import pandas as pd

    return lambda columns: predict_proba(pd.DataFrame(columns))


class TransactionClassifier(JsonCodecModel):
    """Load (ONNX or joblib) -> validate transactions -> class probabilities -> answers."""

    accepts_table = True

    def __init__(self) -> None:
        self.predict_proba: Callable = None
        self.config: Dict[str, Any] = {}

    def load_context(self, context) -> None:
        self.config = dict(context.model_config or {})
        if ONNX_ARTIFACT in context.artifacts:
            self.predict_proba = OnnxTabular(context.artifacts[ONNX_ARTIFACT]).predict_proba
        else:
            import joblib

            self.predict_proba = _frame_input(
                joblib.load(context.artifacts[PIPELINE_ARTIFACT]).predict_proba)

    @classmethod
    def from_pipeline(cls, pipeline, config: Dict[str, Any]) -> "TransactionClassifier":
        """An in-memory model around a fitted pipeline (for tests and notebooks)."""
        model = cls()
        model.predict_proba, model.config = _frame_input(pipeline.predict_proba), dict(config)
        return model

    def score_documents(self, documents: List[Any], params: Dict[str, Any]) -> List[Any]:
        """Many one-transaction documents (a batch, or MLServer's adaptive batching) are
        scored in one vectorised call; anything else document by document."""
        if len(documents) > 1 and all(isinstance(d, dict) for d in documents):
            columns, _ = transactions_to_columns(documents)
            return [self.answer(row) for row in np.asarray(self.predict_proba(columns))]
        return super().score_documents(documents, params)

    def score(self, data: Any) -> Any:
        columns, single = transactions_to_columns(data)
        answers = [self.answer(row) for row in np.asarray(self.predict_proba(columns))]
        return answers[0] if single else answers

    def score_table(self, columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return self.answer_columns(np.asarray(self.predict_proba(table_to_columns(columns))))

    def answer(self, probabilities: np.ndarray) -> Dict[str, Any]:
        raise NotImplementedError

    def answer_columns(self, probabilities: np.ndarray) -> Dict[str, np.ndarray]:
        """``answer`` for every row at once: one output column per answer field."""
        raise NotImplementedError


class FraudModel(TransactionClassifier):
    """``{"is_fraud", "fraud_probability", "threshold"}``; the threshold comes from training."""

    def answer(self, probabilities: np.ndarray) -> Dict[str, Any]:
        threshold = float(self.config["threshold"])
        fraud = float(probabilities[1])
        return {"is_fraud": fraud >= threshold, "fraud_probability": round(fraud, 6),
                "threshold": threshold}

    def answer_columns(self, probabilities: np.ndarray) -> Dict[str, np.ndarray]:
        threshold = float(self.config["threshold"])
        fraud = probabilities[:, 1].astype(np.float64)
        return {"is_fraud": fraud >= threshold, "fraud_probability": np.round(fraud, 6),
                "threshold": np.full(len(fraud), threshold)}


class ScenarioModel(TransactionClassifier):
    """``{"scenario", "probability", "probabilities": {class: p}}`` over the fraud scenarios."""

    def answer(self, probabilities: np.ndarray) -> Dict[str, Any]:
        classes: List[str] = self.config["classes"]
        best = int(np.argmax(probabilities))
        return {
            "scenario": classes[best],
            "probability": round(float(probabilities[best]), 6),
            "probabilities": {name: round(float(p), 6) for name, p in zip(classes, probabilities)},
        }

    def answer_columns(self, probabilities: np.ndarray) -> Dict[str, np.ndarray]:
        classes = np.array(self.config["classes"], dtype=object)
        best = np.argmax(probabilities, axis=1)
        columns = {"scenario": classes[best],
                   "probability": np.round(probabilities[np.arange(len(best)), best], 6)}
        for index, name in enumerate(classes):
            columns[PROBABILITY_PREFIX + str(name)] = np.round(probabilities[:, index].astype(float), 6)
        return columns
