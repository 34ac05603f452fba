"""The served fraud model: the trained scikit-learn pipeline behind the JSON codec."""
from __future__ import annotations

from typing import Any, Dict, List

import joblib

from ..codec import JsonCodecModel
from .features import transactions_to_frame

PIPELINE_ARTIFACT = "pipeline"


class FraudModel(JsonCodecModel):
    """Answers ``{"is_fraud", "fraud_probability", "threshold"}`` per transaction.

    The decision threshold was chosen on held-out data at training time and
    travels with the pipeline in the same artifact.
    """

    def __init__(self) -> None:
        self.pipeline = None
        self.threshold = 0.5

    def load_context(self, context) -> None:
        bundle = joblib.load(context.artifacts[PIPELINE_ARTIFACT])
        self.pipeline = bundle["pipeline"]
        self.threshold = float(bundle["threshold"])

    def score(self, data: Any) -> Any:
        frame, single = transactions_to_frame(data)
        probabilities = self.pipeline.predict_proba(frame)[:, 1]
        answers: List[Dict[str, Any]] = [
            {
                "is_fraud": bool(p >= self.threshold),
                "fraud_probability": round(float(p), 6),
                "threshold": self.threshold,
            }
            for p in probabilities
        ]
        return answers[0] if single else answers
