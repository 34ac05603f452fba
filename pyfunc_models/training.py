"""Models that can be retrained from the feature store, and how (``mlplatform pipeline``).

A model module registers a ``Trainer`` next to its catalog entry: how to fit on a
table of labelled rows, and how the fitted result becomes the served model.  The
pipeline (``pipeline.py``) does the rest the same way for every model: snapshot,
split, fit, metrics and plots, register as ``challenger``, score as served.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from .catalog import BuildContext, ModelBundle


@dataclass
class Fitted:
    """What ``Trainer.fit`` returns."""

    estimator: Any                        # predict_proba(features) -> (rows, classes)
    classes: List[Any]                    # the label values, in predict_proba's order
    config: Dict[str, Any]                # what the served model reads (threshold, classes)
    params: Dict[str, Any]
    # A decision other than the most probable class (binary: the tuned threshold).
    threshold: Optional[float] = None
    # Per-iteration losses of gradient-trained models: {"train": [...], "validation": [...]}.
    loss_curves: Dict[str, List[float]] = field(default_factory=dict)
    # (feature name, importance) of the fitted model, when it has them.
    importances: List[Tuple[str, float]] = field(default_factory=list)
    # The estimator's training inputs: registration profiles them (drift reference).
    reference: Optional[pd.DataFrame] = None


@dataclass(frozen=True)
class Trainer:
    model: str
    fit: Callable[[pd.DataFrame, Dict[str, Any]], Fitted]   # labelled rows, params overrides
    features: Callable[[pd.DataFrame], pd.DataFrame]        # rows -> the estimator's input
    bundle: Callable[[BuildContext, Fitted], ModelBundle]   # fitted -> the model to register
    requirements: Tuple[str, ...] = ()

    def probabilities(self, fitted: Fitted, rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(fitted.estimator.predict_proba(self.features(rows)))


_TRAINERS: Dict[str, Trainer] = {}


def register_trainer(trainer: Trainer) -> Trainer:
    _TRAINERS[trainer.model] = trainer
    return trainer


def trainer_for(model: str) -> Trainer:
    from . import catalog

    catalog.model_specs()  # the built-in model modules register their trainers
    try:
        return _TRAINERS[model]
    except KeyError:
        raise KeyError(f"model {model!r} cannot be retrained from the feature store; models "
                       f"that can: {', '.join(sorted(_TRAINERS))}") from None


def retrainable() -> List[str]:
    from . import catalog

    catalog.model_specs()
    return sorted(_TRAINERS)
