"""The fraud data, features and training, without a server."""
from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pyfunc_models.errors import ModelInputError
from pyfunc_models.fraud.data import SCENARIOS, generate_transactions
from pyfunc_models.fraud.features import (
    EXAMPLE_TRANSACTION,
    FEATURES,
    feature_frame,
    transactions_to_frame,
)
from pyfunc_models.fraud.model import FraudModel
from pyfunc_models.fraud.train import train


def test_generator_is_deterministic_and_imbalanced():
    first, second = generate_transactions(20_000, seed=7), generate_transactions(20_000, seed=7)
    assert_frame_equal(first, second)
    assert not first.equals(generate_transactions(20_000, seed=8))
    assert 0.015 < first["fraud"].mean() < 0.05
    assert set(first["scenario"]) == set(SCENARIOS)
    assert (first["fraud"] == (first["scenario"] != "legit")).all()
    assert first["hour"].between(0, 23).all() and (first["amount"] >= 0).all()


def test_serving_builds_the_same_features_as_training():
    rows = generate_transactions(500, seed=1)
    records = rows[list(FEATURES)].to_dict(orient="records")
    served, single = transactions_to_frame(records)
    assert not single
    assert_frame_equal(served, feature_frame(rows))


@pytest.mark.parametrize("change, message", [
    ({"amount": None}, "'amount' must be a number"),
    ({"hour": 24}, "'hour' must be between 0 and 23"),
    ({"country": ""}, "'country' must be a non-empty string"),
    ({"is_online": "yes"}, "'is_online' must be true or false"),
    ({"amount": True}, "'amount' must be a number"),
])
def test_invalid_transactions_name_the_field(change, message):
    with pytest.raises(ModelInputError, match=message):
        transactions_to_frame({**EXAMPLE_TRANSACTION, **change})


def test_missing_fields_are_listed():
    with pytest.raises(ModelInputError, match="missing field.*amount.*hour"):
        transactions_to_frame({k: v for k, v in EXAMPLE_TRANSACTION.items()
                               if k not in ("amount", "hour")})
    with pytest.raises(ModelInputError, match="non-empty list"):
        transactions_to_frame([])
    with pytest.raises(ModelInputError, match="transaction 1: expected a JSON object"):
        transactions_to_frame([EXAMPLE_TRANSACTION, 5])


def test_small_training_run_learns_and_scores():
    result = train(n_rows=8_000, n_estimators=20, max_depth=8)
    assert result.metrics["roc_auc"] > 0.8
    assert 0 < result.threshold < 1
    model = FraudModel()
    model.pipeline, model.threshold = result.pipeline, result.threshold
    answer = model.predict(None, EXAMPLE_TRANSACTION)
    assert set(answer) == {"is_fraud", "fraud_probability", "threshold"}
    answers = model.predict(None, [EXAMPLE_TRANSACTION] * 3)
    assert len(answers) == 3 and answers[0] == answer
    frame = pd.DataFrame([EXAMPLE_TRANSACTION])  # what MLflow's scoring server hands over
    assert model.predict(None, frame) == [answer]
