"""Reference profiles of a model's training inputs, and the population stability index
(PSI) of live inputs against them -- seed 002's input-drift monitoring.

Training and serving share this module: registration stores ``reference_profile(frame)``
beside the model (artifact ``reference_profile.json``); the gateway bins a window of
live inputs with the *same* edges and compares (``psi``).

Per feature, a profile holds:

* numbers: the cut points of ``BINS`` quantile bins of the training values (ties
  merged, so a feature with few distinct values gets fewer bins) and the share of
  training rows in each bin, plus the share of missing values;
* anything else (text, booleans): the shares of the ``MAX_CATEGORIES`` most frequent
  values, the rest pooled under ``OTHER`` (so do values never seen in training).

PSI = sum over bins of (live - reference) * ln(live / reference), each share floored
at ``FLOOR`` so an empty bin counts as very unlikely instead of infinitely so.  Usual
reading (also the verdicts here): < 0.1 stable, 0.1-0.2 watch, > 0.2 drift.  With
``n`` live inputs and ``k`` bins, sampling noise alone gives about (k - 1) / (2 n):
0.0045 for 10 bins and 1,000 inputs.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import pandas as pd

PROFILE_ARTIFACT = "reference_profile.json"
BINS = 10
MAX_CATEGORIES = 20
OTHER = "__other__"
MISSING = "__missing__"
FLOOR = 1e-4
STABLE, WATCH, DRIFT = "stable", "watch", "drift"
WATCH_AT, DRIFT_AT = 0.1, 0.2


def verdict(value: float) -> str:
    if value > DRIFT_AT:
        return DRIFT
    return WATCH if value >= WATCH_AT else STABLE


def reference_profile(frame: pd.DataFrame) -> Dict[str, Any]:
    """The profile of a model's training inputs (one column per feature)."""
    features: Dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            features[str(name)] = _numeric(column.to_numpy(dtype=np.float64))
        else:
            features[str(name)] = _categorical(column.to_numpy())
    return {"format": 1, "rows": int(len(frame)), "features": features}


def _numeric(values: np.ndarray) -> Dict[str, Any]:
    present = values[np.isfinite(values)]
    quantiles = np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]) if len(present) else []
    edges = sorted(set(float(q) for q in quantiles))
    counts = np.bincount(np.searchsorted(edges, present, side="right"),
                         minlength=len(edges) + 1)
    total = max(len(values), 1)
    return {"kind": "numeric", "edges": edges,
            "shares": [float(c) / total for c in counts],
            "missing": float(len(values) - len(present)) / total}


def _categorical(values: np.ndarray) -> Dict[str, Any]:
    texts = pd.Series([category(v) for v in values])
    shares = texts.value_counts(normalize=True)
    top = {str(k): float(v) for k, v in shares.head(MAX_CATEGORIES).items()}
    rest = 1.0 - sum(top.values())
    return {"kind": "categorical", "shares": {**top, OTHER: max(rest, 0.0)}}


def category(value: Any) -> str:
    """How a value is counted as a category (JSON ``true`` and training's ``True`` alike)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


def live_shares(feature: Dict[str, Any], values: List[Any]) -> List[float]:
    """The live values' shares in the reference's bins (numbers: bins then missing)."""
    total = max(len(values), 1)
    if feature["kind"] == "numeric":
        numbers = np.array([_number(v) for v in values], dtype=np.float64)
        present = numbers[np.isfinite(numbers)]
        counts = np.bincount(np.searchsorted(feature["edges"], present, side="right"),
                             minlength=len(feature["edges"]) + 1)
        return [float(c) / total for c in counts] + [float(len(numbers) - len(present)) / total]
    known = feature["shares"]
    counts = dict.fromkeys(known, 0)
    for value in values:
        text = category(value)
        counts[text if text in counts else OTHER] += 1
    return [counts[k] / total for k in known]


def reference_shares(feature: Dict[str, Any]) -> List[float]:
    if feature["kind"] == "numeric":
        return list(feature["shares"]) + [feature.get("missing", 0.0)]
    return list(feature["shares"].values())


def psi(reference: Iterable[float], live: Iterable[float]) -> float:
    total = 0.0
    for expected, actual in zip(reference, live):
        expected, actual = max(expected, FLOOR), max(actual, FLOOR)
        total += (actual - expected) * math.log(actual / expected)
    return total


def feature_psi(feature: Dict[str, Any], values: List[Any]) -> float:
    return psi(reference_shares(feature), live_shares(feature, values))


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_profile(profile: Any) -> Optional[str]:
    """What is wrong with a stored profile, or None (the gateway reads it from MLflow)."""
    if not isinstance(profile, dict) or not isinstance(profile.get("features"), dict):
        return "not a reference profile (no 'features' object)"
    for name, feature in profile["features"].items():
        if not isinstance(feature, dict) or feature.get("kind") not in ("numeric", "categorical"):
            return f"feature {name!r} has no kind 'numeric' or 'categorical'"
    return None
