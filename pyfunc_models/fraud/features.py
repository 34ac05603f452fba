"""Transaction features, shared by training and serving.

Training builds its frame with ``feature_frame(generated_rows)``; serving
builds it with ``transactions_to_frame(request_json)``, which validates the
JSON first and then calls the same ``feature_frame``.  The column list and the
types live only here (the encoder, fitted in training, travels inside the
model).  Serving needs pandas, not scikit-learn.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pandas as pd

from ..errors import ModelInputError

CATEGORICAL = ("merchant_category", "country")
NUMERIC = ("amount", "hour", "card_age_days", "distance_from_home_km", "transactions_last_24h")
BOOLEAN = ("is_online",)
FEATURES: Tuple[str, ...] = CATEGORICAL + NUMERIC + BOOLEAN

# Numeric ranges a transaction must fall in; the message names the field.
RANGES = {
    "amount": (0.0, 1e9),
    "hour": (0, 23),
    "card_age_days": (0, 100_000),
    "distance_from_home_km": (0.0, 40_075.0),
    "transactions_last_24h": (0, 100_000),
}

EXAMPLE_TRANSACTION: Dict[str, Any] = {
    "amount": 1250.0,
    "hour": 3,
    "merchant_category": "electronics",
    "country": "NG",
    "card_age_days": 2100,
    "is_online": True,
    "distance_from_home_km": 5400.0,
    "transactions_last_24h": 6,
}


def _typed(name: str, values) -> np.ndarray:
    """One feature column with its model dtype: text for categories, float for the rest."""
    if name in CATEGORICAL:
        return np.asarray(values).astype(str).astype(object)
    return np.asarray(values, dtype=np.float64)


def feature_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Training: the model's input columns, in order, with their dtypes."""
    return pd.DataFrame({name: _typed(name, rows[name].to_numpy()) for name in FEATURES})


def transactions_to_columns(data: Any) -> Tuple[Dict[str, np.ndarray], bool]:
    """Serving: validate one transaction (a JSON object) or a list of them.

    Returns the typed feature columns (as ``feature_frame`` types them) and
    whether a single object was sent, so the answer can have the question's
    shape.  Plain arrays, no DataFrame: the ONNX session takes them as they are.
    """
    single = isinstance(data, dict)
    records: List[Any] = [data] if single else data
    if not isinstance(records, list) or not records:
        raise ModelInputError(
            "expected a transaction object or a non-empty list of them, "
            f"with fields {', '.join(FEATURES)}"
        )
    for index, record in enumerate(records):
        _check_record(record, "transaction" if single else f"transaction {index}")
    columns = {name: _typed(name, [record[name] for record in records]) for name in FEATURES}
    return columns, single


def table_to_columns(table: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Serving a table (a batch as columns): the same checks as per transaction, vectorised.

    Errors name the column and the first offending rows.
    """
    missing = [name for name in FEATURES if name not in table]
    if missing:
        raise ModelInputError(f"missing column(s) {', '.join(missing)}")
    columns = {}
    for name in FEATURES:
        values = table[name]
        if name in CATEGORICAL:
            text = np.asarray(values, dtype=object)
            bad = np.flatnonzero([not isinstance(v, str) or not v for v in text])
            _refuse(bad, name, "must be non-empty strings")
            columns[name] = text
            continue
        try:
            numbers = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelInputError(f"column {name!r} must hold numbers ({exc})") from exc
        _refuse(np.flatnonzero(np.isnan(numbers)), name, "has missing values")
        if name in BOOLEAN:
            _refuse(np.flatnonzero(~np.isin(numbers, (0.0, 1.0))), name, "must be true or false")
        else:
            low, high = RANGES[name]
            _refuse(np.flatnonzero((numbers < low) | (numbers > high)), name,
                    f"must be between {low} and {high}")
        columns[name] = numbers
    return columns


def _refuse(rows: np.ndarray, name: str, problem: str) -> None:
    if len(rows):
        shown = ", ".join(str(int(r)) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise ModelInputError(f"column {name!r} {problem} (rows {shown})")


def transactions_to_frame(data: Any) -> Tuple[pd.DataFrame, bool]:
    """Serving, as a DataFrame (what scikit-learn pipelines take)."""
    columns, single = transactions_to_columns(data)
    return pd.DataFrame(columns), single


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise ModelInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [name for name in FEATURES if name not in record]
    if missing:
        raise ModelInputError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in CATEGORICAL:
        if not isinstance(record[name], str) or not record[name]:
            raise ModelInputError(f"{where}: field {name!r} must be a non-empty string")
    for name in BOOLEAN:
        if record[name] not in (True, False, 0, 1):
            raise ModelInputError(f"{where}: field {name!r} must be true or false")
    for name in NUMERIC:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelInputError(f"{where}: field {name!r} must be a number, got {value!r}")
        low, high = RANGES[name]
        if not low <= value <= high:
            raise ModelInputError(f"{where}: field {name!r} must be between {low} and {high}")
