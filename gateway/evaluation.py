"""Metrics for /evaluate: predictions read from model answers, compared with labels.

A model's answer names its prediction in one of ``PREDICTION_KEYS`` (``is_fraud``,
``scenario``, ``digit``, ``pred``, ...) and, for binary models, a positive-class
score in one of ``SCORE_KEYS``; ``probabilities`` maps class -> probability.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .errors import BadRequest

PREDICTION_KEYS = ("label", "prediction", "is_fraud", "scenario", "digit", "pred", "class")
SCORE_KEYS = ("fraud_probability", "proba", "score")


def normal(value: Any) -> str:
    """Labels compare as text: True/1/"1" and 1.0 are the same class."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return {"true": "1", "false": "0"}.get(text.lower(), text)


def prediction_of(answer: Any) -> Tuple[str, Optional[float]]:
    if not isinstance(answer, dict):
        raise BadRequest("the model's answers carry no prediction to evaluate", field="model")
    for key in PREDICTION_KEYS:
        if key in answer:
            score = next((float(answer[k]) for k in SCORE_KEYS if k in answer), None)
            return normal(answer[key]), score
    raise BadRequest(f"the model's answer has none of {', '.join(PREDICTION_KEYS)}", field="model")


def evaluate(truth: List[Any], answers: List[Any]) -> Dict[str, Any]:
    predicted, scores = zip(*(prediction_of(a) for a in answers))
    return metrics([normal(v) for v in truth], list(predicted), list(scores))


def metrics(expected: List[str], predicted: List[str],
            scores: List[Optional[float]]) -> Dict[str, Any]:
    """The report from labels and predictions already made text (``normal``)."""
    from sklearn import metrics  # ~100 MB: loaded on the first /evaluate, not at start-up

    classes = sorted(set(expected) | set(predicted))
    report: Dict[str, Any] = {
        "rows": len(expected),
        "accuracy": metrics.accuracy_score(expected, predicted),
        "classes": classes,
        "confusion_matrix": metrics.confusion_matrix(expected, predicted, labels=classes).tolist(),
    }
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        expected, predicted, labels=classes, zero_division=0)
    if set(classes) <= {"0", "1"}:
        report.update({
            "precision": metrics.precision_score(expected, predicted, pos_label="1", zero_division=0),
            "recall": metrics.recall_score(expected, predicted, pos_label="1", zero_division=0),
            "f1": metrics.f1_score(expected, predicted, pos_label="1", zero_division=0),
        })
        if None not in scores and len(set(expected)) == 2:
            positives = np.array([label == "1" for label in expected])
            report["roc_auc"] = metrics.roc_auc_score(positives, np.array(scores))
    else:
        report["per_class"] = {
            name: {"precision": p, "recall": r, "f1": f, "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)}
        report.update({"macro_precision": float(np.mean(precision)),
                       "macro_recall": float(np.mean(recall)), "macro_f1": float(np.mean(f1))})
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in report.items()}
