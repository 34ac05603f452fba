"""A model's life on the real stack: add data -> retrain -> metrics -> deploy -> rollback,
over HTTP with the typed client, with traffic on the served model the whole time."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlplatform.client.gateway import (
    BadRequest,
    Conflict,
    GatewayClient,
    ModelServerRefused,
    NotFound,
    Unauthorized,
)
from mlplatform.pyfunc_models.feature_store import FeatureStore, dataset_for
from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES
from mlplatform.pyfunc_models.pipeline import PipelineError, run_pipeline
from tests.support import S3_KEY, S3_SECRET, Traffic

pytestmark = pytest.mark.stack


def labelled_csv(rows: int, seed: int) -> bytes:
    return generate_transactions(rows, seed)[list(FEATURES) + ["fraud"]].to_csv(
        index=False).encode()


@pytest.fixture(scope="module")
def token(served):
    return served.cli("token", "create", "--group", "lifecycle", "--scope",
                      "lifecycle").stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def gateway(served, token):
    with GatewayClient(served.gateway_url, token=token) as client:
        yield client


def store_size(served) -> int:
    store = FeatureStore(f"sqlite:///{Path(served.env['MLPLATFORM_STATE_DIR']) / 'features.db'}")
    try:
        return store.size(dataset_for("fraud"))
    finally:
        store.close()


def test_add_data_retrain_compare_deploy_rollback(served, gateway):
    added = gateway.add_data("fraud", labelled_csv(300, seed=90), filename="week1.csv")
    assert added["rows"] == 300 and added["source"] == "week1.csv"
    assert added["dataset_rows"] == 60_300 == store_size(served)  # seeded on first use + 300

    training = gateway.retrain("fraud")
    assert isinstance(training["id"], int) and training["status"] == "Requested"
    with pytest.raises(Conflict):  # one training per model at a time
        gateway.retrain("fraud")
    with pytest.raises(Conflict) as early:  # nothing to deploy yet
        gateway.deploy(training["id"])
    assert "is Requested" in early.value.detail or "is Running" in early.value.detail

    report = gateway.wait_training(training["id"], timeout=900)
    assert report["status"] == "Succeeded", report["error"]
    version = report["version"]
    for metrics in (report["metrics"], report["served_metrics"], report["champion"]["metrics"]):
        assert {"roc_auc", "pr_auc", "f1", "precision", "recall", "log_loss"} <= set(metrics)
    assert report["metrics"]["rows"] == report["champion"]["metrics"]["rows"]  # same rows
    assert abs(report["metrics"]["roc_auc"] - report["served_metrics"]["roc_auc"]) < 1e-3
    assert set(report["plots"]) == {"roc", "precision_recall", "confusion_matrix",
                                    "feature_importance", "learning_curve"}
    png = requests.get(served.gateway_url + report["plots"]["roc"],
                       headers=gateway.headers, timeout=60)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    registry = MlflowClient(served.mlflow_url)
    assert registry.get_model_version_by_alias("fraud", "challenger").version == version
    champion = registry.get_model_version_by_alias("fraud", "champion").version
    assert champion != version  # training never promotes by itself
    parent = registry.get_run(report["run_id"])
    assert parent.data.tags["mlplatform.stage"] == "pipeline"
    assert {stage: info["status"] for stage, info in report["stages"].items()} == {
        "extract_data": "FINISHED", "train_model": "FINISHED", "inference_model": "FINISHED"}
    extract = registry.get_run(report["stages"]["extract_data"]["run_id"])
    assert extract.data.params["rows"] == "60300" and len(extract.inputs.dataset_inputs) == 2

    transaction = {"path": "/forward?model=fraud", "body": EXAMPLE_TRANSACTION}
    with Traffic(served.gateway_url, **transaction) as during_deploy:
        deployed = gateway.deploy(report["id"])
    assert (deployed["version"], deployed["previous"]) == (version, champion)
    assert {status for status, _ in during_deploy.seen} == {200}, during_deploy.seen
    assert answered_by(served) == version  # the very next call
    with Traffic(served.gateway_url, **transaction) as during_rollback:
        back = gateway.rollback("fraud")
    assert (back["version"], back["previous"]) == (champion, version)
    assert {status for status, _ in during_rollback.seen} == {200}, during_rollback.seen
    assert answered_by(served) == champion

    rows = {row["version"]: row for row in gateway.versions("fraud")}
    assert rows[champion]["served"] and "champion" in rows[champion]["aliases"]
    assert "previous_champion" in rows[version]["aliases"]
    assert rows[version]["pipeline_status"] == "passed" and rows[version]["deployed_at"]
    assert "roc_auc" in rows[version]["metrics"]


def answered_by(served) -> str:
    response = requests.post(served.gateway_url + "/forward?model=fraud",
                             json=EXAMPLE_TRANSACTION, timeout=30)
    assert response.status_code == 200
    return response.headers["x-model-version"]


@pytest.mark.parametrize("spoil, named", [
    (lambda f: f.assign(hour=f["hour"].where(f.index != 5, 31)), "'hour'"),
    (lambda f: f.assign(fraud=f["fraud"].where(f.index != 1, 3)), "'fraud'"),
    (lambda f: f.drop(columns=["fraud"]), "missing column(s) fraud"),
])
def test_bad_rows_are_400_and_nothing_is_written(served, gateway, spoil, named):
    before = store_size(served)
    frame = spoil(pd.read_csv(io.BytesIO(labelled_csv(30, seed=91))))
    with pytest.raises(BadRequest) as raised:
        gateway.add_data("fraud", frame.to_csv(index=False).encode(), filename="bad.csv")
    assert named in raised.value.detail and "bad.csv" in raised.value.detail
    assert store_size(served) == before


def test_lifecycle_routes_refuse_what_they_cannot_do(served, gateway):
    url = served.gateway_url
    assert requests.put(url + "/retrain?model=fraud", timeout=30).status_code == 401
    assert requests.get(url + "/models/fraud/versions", timeout=30).status_code == 401
    with pytest.raises(BadRequest):
        gateway.retrain("echo")  # no training dataset
    with pytest.raises(BadRequest):
        gateway.add_data("nosuch", labelled_csv(5, seed=1), filename="x.csv")
    with pytest.raises(NotFound):
        gateway.training(987654)
    with pytest.raises(NotFound):
        gateway.deploy(987654)
    with pytest.raises(NotFound):
        gateway.rollback("nosuch")
    with pytest.raises(NotFound):
        gateway.versions("nosuch")
    assert requests.get(url + "/metrics/abc", headers=gateway.headers,
                        timeout=30).status_code == 400
    other = served.cli("token", "create", "--group", "others", "--scope",
                       "lifecycle").stdout.strip().splitlines()[-1]
    with GatewayClient(url, token=other) as stranger:
        with pytest.raises(Unauthorized):
            GatewayClient(url, token="mlp_wrong").versions("fraud")
        assert stranger.versions("fraud")  # model-level: any token


def test_a_model_that_trains_but_does_not_serve_fails_the_pipeline(served, monkeypatch):
    """Failure injection: the artifact registered is not the model that was trained (its
    bundle carries a model fitted on shuffled labels); inference_model must catch it,
    tag the version failed and take the challenger alias away again."""
    from mlplatform.pyfunc_models import training
    from mlplatform.pyfunc_models.fraud import retrain

    honest = training.trainer_for("fraud")

    def swapped_bundle(context, fitted):
        rows = generate_transactions(3000, seed=5)
        rows["fraud"] = rows["fraud"].sample(frac=1.0, random_state=1).to_numpy()
        return honest.bundle(context, retrain.fit_fraud(rows, {"n_estimators": 5}))

    monkeypatch.setitem(training._TRAINERS, "fraud", training.Trainer(
        "fraud", honest.fit, honest.features, swapped_bundle, honest.requirements))
    store_url = f"sqlite:///{Path(served.env['MLPLATFORM_STATE_DIR']) / 'features.db'}"
    registry = MlflowClient(served.mlflow_url)
    challenger_before = registry.get_model_version_by_alias("fraud", "challenger").version
    with pytest.raises(PipelineError) as raised:
        run_pipeline("fraud", served.mlflow_url, store_url,
                     params={"n_estimators": 10, "learning_curve": 0}, log=lambda _: None)
    assert "trains but does not serve" in str(raised.value)
    broken = raised.value.result.version
    assert registry.get_model_version("fraud", broken).tags[
        "mlplatform.pipeline_status"] == "failed"
    aliases = registry.get_registered_model("fraud").aliases
    assert aliases.get("challenger") != broken
    assert challenger_before != broken


@pytest.mark.browser
def test_models_tab_shows_versions_plots_and_deploys_and_rolls_back(served, gateway, token,
                                                                    browser):
    """After the flow above: a retrained version that is not served, with its training."""
    rows = {row["version"]: row for row in gateway.versions("fraud")}
    retrained = next(v for v, row in rows.items() if row["training_id"] and not row["served"]
                     and row["pipeline_status"] == "passed")
    served_now = next(v for v, row in rows.items() if row["served"])
    page = browser.new_page()
    page.goto(served.gateway_url + "/")
    page.click("#tab-models")
    page.wait_for_selector("#lifecycle-model option[value=fraud]", state="attached")
    page.select_option("#lifecycle-model", "fraud")
    page.fill("#token", token)
    page.press("#token", "Tab")  # the token is read when the field is left
    row = f"#versions tr[data-version='{retrained}']"
    page.wait_for_selector(f"{row} button.deploy")
    page.click(f"{row} button:has-text('Plots')")
    page.wait_for_function("document.querySelectorAll('#plots img').length === 5")
    page.wait_for_function("[...document.querySelectorAll('#plots img')].every("
                           "i => i.complete && i.naturalWidth > 100)")
    page.click(f"{row} button.deploy")
    page.wait_for_function(f"document.getElementById('lifecycle-status').textContent"
                           f".startsWith('fraud version {retrained}:')", timeout=120_000)
    assert answered_by(served) == retrained
    page.click("#rollback")
    page.wait_for_function(f"document.getElementById('lifecycle-status').textContent"
                           f".startsWith('fraud version {served_now}:')", timeout=120_000)
    assert answered_by(served) == served_now
    page.close()


def test_a_version_the_model_server_cannot_load_is_502_and_nothing_switches(served, gateway):
    """Failure injection after the flow above: the retrained version's artifacts are
    moved away in S3, so MLServer cannot load it.  POST /deploy/<id> answers 502 with
    MLServer's reason; the champion alias, the served version and the traffic stay."""
    from mlplatform.scripts.s3 import s3_client

    rows = {row["version"]: row for row in gateway.versions("fraud")}
    retrained = next(v for v, row in rows.items()
                     if row["training_id"] and not row["served"]
                     and row["pipeline_status"] == "passed")
    registry = MlflowClient(served.mlflow_url)
    champion = registry.get_model_version_by_alias("fraud", "champion").version
    served_now = answered_by(served)
    model_id = registry.get_model_version("fraud", retrained).source.rsplit("/", 1)[-1]
    s3 = s3_client(served.s3.endpoint, S3_KEY, S3_SECRET)
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=served.s3.bucket) for obj in page.get("Contents", [])
        if f"/models/{model_id}/artifacts/" in obj["Key"]]
    assert keys, f"no artifacts of {model_id} in the bucket"
    for key in keys:
        s3.copy_object(Bucket=served.s3.bucket, Key=key + ".moved",
                       CopySource={"Bucket": served.s3.bucket, "Key": key})
        s3.delete_object(Bucket=served.s3.bucket, Key=key)
    try:
        transaction = {"path": "/forward?model=fraud", "body": EXAMPLE_TRANSACTION}
        with Traffic(served.gateway_url, **transaction) as during:
            with pytest.raises(ModelServerRefused) as refused:
                gateway.deploy(rows[retrained]["training_id"])
        # MLServer's reason, naming the version
        assert f"could not load models:/fraud/{retrained}" in refused.value.detail, (
            refused.value.detail)
        assert {status for status, _ in during.seen} == {200}, during.seen
        assert {version for _, version in during.seen} == {served_now}
        assert answered_by(served) == served_now
        assert registry.get_model_version_by_alias("fraud", "champion").version == champion
    finally:
        for key in keys:
            s3.copy_object(Bucket=served.s3.bucket, Key=key,
                           CopySource={"Bucket": served.s3.bucket, "Key": key + ".moved"})
            s3.delete_object(Bucket=served.s3.bucket, Key=key + ".moved")
