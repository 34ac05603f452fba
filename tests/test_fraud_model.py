"""The fraud data, features and training, without a server."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from mlplatform.pyfunc_models.catalog import BuildContext
from mlplatform.pyfunc_models.errors import ModelInputError
from mlplatform.pyfunc_models.fraud.data import SCENARIOS, generate_transactions
from mlplatform.pyfunc_models.fraud.features import (
    BOOLEAN,
    CATEGORICAL,
    EXAMPLE_TRANSACTION,
    FEATURES,
    NUMERIC,
    feature_frame,
    transactions_to_columns,
    transactions_to_frame,
)
from mlplatform.pyfunc_models.fraud.model import FraudModel, ScenarioModel
from mlplatform.pyfunc_models.fraud.train import train, train_scenario
from mlplatform.pyfunc_models.onnx_tabular import (
    METADATA_KEYS,
    OnnxTabular,
    export_pipeline,
    read_metadata,
    training_metadata,
)


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


@pytest.fixture(scope="module")
def small_fraud():
    return train(n_rows=8_000, n_estimators=20, max_depth=8)


def test_small_training_run_learns_and_scores(small_fraud):
    assert small_fraud.metrics["roc_auc"] > 0.8
    assert 0 < small_fraud.config["threshold"] < 1
    model = FraudModel.from_pipeline(small_fraud.pipeline, small_fraud.config)
    answer = model.predict(None, EXAMPLE_TRANSACTION)
    assert set(answer) == {"is_fraud", "fraud_probability", "threshold"}
    answers = model.predict(None, [EXAMPLE_TRANSACTION] * 3)
    assert len(answers) == 3 and answers[0] == answer
    columns = model.predict(None, pd.DataFrame([EXAMPLE_TRANSACTION] * 2))  # a batch: columns
    assert columns["fraud_probability"].tolist() == [answer["fraud_probability"]] * 2
    assert columns["is_fraud"].tolist() == [answer["is_fraud"]] * 2


def test_onnx_export_agrees_with_sklearn_and_carries_provenance(small_fraud, tmp_path):
    context = BuildContext(tmp_path, "fraud", "fraud-experiment", "run-123")
    path = export_pipeline(small_fraud.pipeline, CATEGORICAL, NUMERIC + BOOLEAN,
                           training_metadata(context), tmp_path / "model.onnx")
    rows = generate_transactions(2_000, seed=5)
    columns, _ = transactions_to_columns(rows[list(FEATURES)].to_dict(orient="records"))
    onnx = OnnxTabular(str(path)).predict_proba(columns)
    sklearn = small_fraud.pipeline.predict_proba(feature_frame(rows))
    np.testing.assert_allclose(onnx, sklearn, atol=1e-5)

    metadata = read_metadata(path)
    assert set(metadata) == set(METADATA_KEYS)
    assert (metadata["experiment_name"], metadata["run_id"], metadata["model_name"]) == (
        "fraud-experiment", "run-123", "fraud")
    saved = datetime.fromisoformat(metadata["saved_at"])
    assert saved.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - saved) < timedelta(minutes=5)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown.*", metadata["git_commit"])


def test_scenario_model_answers_label_and_probabilities():
    result = train_scenario(n_rows=8_000, n_estimators=20, max_depth=8)
    assert result.config["classes"] == sorted(SCENARIOS)
    assert {"accuracy", "macro_f1", "f1_card_testing"} <= set(result.metrics)
    model = ScenarioModel.from_pipeline(result.pipeline, result.config)
    answer = model.predict(None, EXAMPLE_TRANSACTION)
    assert answer["scenario"] in SCENARIOS
    assert set(answer["probabilities"]) == set(SCENARIOS)
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-3
    assert answer["probability"] == max(answer["probabilities"].values())


def _table_round_trip(model, frame):
    """A V2 table request through the model, as MLServer would carry it, decoded back."""
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest

    from mlplatform.gateway.table import TableAnswers, output_columns, table_request
    from mlplatform.pyfunc_models.table import encode_frame

    request = orjson.loads(orjson.dumps(table_request(encode_frame(frame))))  # as sent: JSON
    columns = model.predict(None, InferenceRequest.model_validate(request))
    body = {"outputs": [NumpyCodec.encode_output(k, v).model_dump() for k, v in columns.items()]}
    return list(TableAnswers(output_columns(body), len(frame)))


@pytest.mark.parametrize("trainer, model_class", [(train, FraudModel),
                                                  (train_scenario, ScenarioModel)])
def test_table_answers_equal_per_row_answers(trainer, model_class):
    result = trainer(n_rows=5_000, n_estimators=10, max_depth=6)
    model = model_class.from_pipeline(result.pipeline, result.config)
    frame = generate_transactions(400, seed=2)[list(FEATURES)]
    assert _table_round_trip(model, frame) == model.predict(None, frame.to_dict(orient="records"))


def test_table_errors_name_the_column_and_rows(small_fraud):
    model = FraudModel.from_pipeline(small_fraud.pipeline, small_fraud.config)
    frame = generate_transactions(20, seed=2)[list(FEATURES)]
    broken = frame.copy()
    broken.loc[[3, 9], "hour"] = 30
    with pytest.raises(ModelInputError, match=r"column 'hour' must be between 0 and 23 \(rows 3, 9\)"):
        _table_round_trip(model, broken)
    missing = frame.copy()
    missing.loc[4, "amount"] = np.nan
    with pytest.raises(ModelInputError, match=r"column 'amount' has missing values \(rows 4\)"):
        _table_round_trip(model, missing)
    with pytest.raises(ModelInputError, match=r"missing column\(s\) country"):
        _table_round_trip(model, frame.drop(columns=["country"]))
