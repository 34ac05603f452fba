"""The fraud models' training data in the feature store: one dataset per label.

Both start from the same synthetic transactions (``data.generate_transactions``
with the training defaults) and are checked with serving's own column checks
(``features.table_to_columns``): a row the model could not score is never
added to what it learns from.
"""
from __future__ import annotations

import pandas as pd

from ..feature_store import BOOLEAN as BOOL_COLUMN, NUMBER, TEXT, Dataset, register_dataset
from .data import SCENARIOS, generate_transactions
from .features import BOOLEAN, CATEGORICAL, FEATURES, table_to_columns

SEED_ROWS, SEED = 60_000, 42  # the rows `mlplatform register fraud` trains on


def _kind(name: str) -> str:
    return TEXT if name in CATEGORICAL else BOOL_COLUMN if name in BOOLEAN else NUMBER


def _seed() -> pd.DataFrame:
    return generate_transactions(SEED_ROWS, SEED)


COLUMNS = tuple((name, _kind(name)) for name in FEATURES)

FRAUD = register_dataset(
    Dataset("fraud", COLUMNS, "fraud", (0, 1), _seed, table_to_columns),
    "fraud", "fraud_sklearn", "fraud_gbm")
SCENARIO = register_dataset(
    Dataset("fraud_scenario", COLUMNS, "scenario", SCENARIOS, _seed, table_to_columns),
    "fraud_scenario")
