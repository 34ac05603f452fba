"""register -> configure -> serve -> infer, on a real MLflow + S3 + MLServer stack."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlplatform.client import (
    InferenceServerError,
    MLServerClient,
    create_request_to_mlserver_model,
    decode_answer,
    send_request_to_mlserver_model,
)
from mlplatform.mlserver_configs.generator import RUNTIME
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.scripts.s3 import s3_client
from tests.support import S3_KEY, S3_SECRET

LEGIT = {**EXAMPLE_TRANSACTION, "amount": 23.5, "hour": 13, "merchant_category": "grocery",
         "country": "US", "is_online": False, "distance_from_home_km": 3.0,
         "transactions_last_24h": 1}


@pytest.fixture(scope="module")
def server(served):
    with MLServerClient(served.mlserver_url) as client:
        yield client


@pytest.fixture(scope="module")
def registry(served):
    mlflow.set_tracking_uri(served.mlflow_url)  # for mlflow.models / mlflow.pyfunc calls too
    return MlflowClient(tracking_uri=served.mlflow_url)


def test_register_prints_uri_and_s3_location_and_stores_artifacts_in_the_bucket(served):
    output = served.cli("register", "echo").stdout  # already registered: reports, does not retrain
    assert re.search(r"models:/echo@champion -> models:/echo/\d+", output)
    location = re.search(r"artifacts: (\S+)", output).group(1)
    assert location.startswith(f"s3://{served.s3.bucket}/")
    assert re.search(r"/models/m-[0-9a-f]+/artifacts$", location)

    key_prefix = location[len(f"s3://{served.s3.bucket}/"):]
    listing = s3_client(served.s3.endpoint, S3_KEY, S3_SECRET).list_objects_v2(
        Bucket=served.s3.bucket, Prefix=key_prefix)
    names = {obj["Key"].rsplit("/", 1)[-1] for obj in listing.get("Contents", [])}
    assert {"MLmodel", "python_model.pkl", "input_example.json"} <= names
    assert "example_request.json" in names


def test_registered_models_carry_no_signature_but_an_example_request(served, registry, tmp_path):
    for name in ("echo", "fraud"):
        version = registry.get_model_version_by_alias(name, "champion")
        model = mlflow.models.get_model_info(f"models:/{name}/{version.version}")
        assert model.signature is None, "a signature would make MLServer reject the wire format"
        assert version.tags["mlplatform.fingerprint"]
    local = mlflow.artifacts.download_artifacts("models:/echo@champion", dst_path=str(tmp_path))
    example = json.loads(next(tmp_path.rglob("example_request.json")).read_text())
    assert example == create_request_to_mlserver_model({"a": 10}, "echo")
    assert json.loads(next(tmp_path.rglob("input_example.json")).read_text()) == {"a": 10}
    assert local


def test_fraud_run_has_training_metrics(registry):
    version = registry.get_model_version_by_alias("fraud", "champion")
    metrics = registry.get_run(version.run_id).data.metrics
    assert 0.8 < metrics["roc_auc"] <= 1.0
    assert 0.0 < metrics["fraud_rate"] < 0.1
    assert {"precision", "recall", "f1", "threshold"} <= set(metrics)


def test_generated_model_settings_pin_the_registry_version(served, registry):
    config = served.state_dir / "mlserver"
    settings = json.loads((config / "settings.json").read_text())
    assert settings["load_models_at_startup"] is False
    for name in ("echo", "fraud"):
        served_version = registry.get_registered_model(name).tags["mlplatform.served.local"]
        documents = [json.loads(p.read_text()) for p in (config / name).rglob("model-settings.json")]
        assert [d["parameters"]["version"] for d in documents] == [served_version]
        assert documents[0]["implementation"] == RUNTIME
        assert documents[0]["parameters"]["uri"] == f"models:/{name}/{served_version}"
    text = "".join(p.read_text() for p in config.rglob("*.json"))
    assert S3_SECRET not in text and S3_KEY not in text


def test_echo_through_the_client(server):
    assert server.predict("echo", {"a": 10}) == {"result": 20}
    assert server.is_ready("echo")


def test_the_guides_three_functions(served):
    request = create_request_to_mlserver_model({"a": 10}, "echo")
    assert request == {"inputs": [{"name": "echo", "shape": [9], "datatype": "BYTES",
                                   "data": '{"a": 10}'}]}
    response = send_request_to_mlserver_model(request, served.mlserver_url, "echo")
    assert response.status_code == 200
    output = response.json()["outputs"][0]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "BYTES", [1])
    assert decode_answer(response) == {"result": 20}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the guide uses pydantic v1 names
def test_the_guides_own_decode_answer_code(served):
    """The guide's decode_answer, verbatim (it uses MLServer's codecs), reads our answers."""
    from mlserver.codecs.string import StringRequestCodec
    from mlserver.types import InferenceResponse

    def decode_answer_from_guide(post_response):
        inf_resp = InferenceResponse.parse_raw(post_response.text)
        raw_json = StringRequestCodec.decode_response(inf_resp)
        res = json.loads(raw_json[0])
        return res

    response = requests.post(f"{served.mlserver_url}/v2/models/echo/infer",
                             json=create_request_to_mlserver_model({"a": 10}, "echo"))
    assert decode_answer_from_guide(response) == {"result": 20}


def test_fraud_one_transaction_and_a_batch(server):
    fraud = server.predict("fraud", EXAMPLE_TRANSACTION)
    assert fraud["is_fraud"] is True and fraud["fraud_probability"] > fraud["threshold"]
    answers = server.predict("fraud", [EXAMPLE_TRANSACTION, LEGIT])
    assert [a["is_fraud"] for a in answers] == [True, False]


def test_standard_v2_request_with_several_documents(server):
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES",
                        "data": [json.dumps({"a": 1}), json.dumps({"a": 2.5})]}]}
    response = server.infer("echo", body)
    assert response["outputs"][0]["data"] == ['{"result": 2}', '{"result": 5.0}']


def test_tritonclient_gets_a_fraud_prediction(served):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served.mlserver_url.removeprefix("http://"))
    assert client.is_model_ready("fraud")
    tensor = triton.InferInput("transaction", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([json.dumps(EXAMPLE_TRANSACTION)], dtype=object),
                               binary_data=False)
    result = client.infer("fraud", [tensor],
                          outputs=[triton.InferRequestedOutput("output", binary_data=False)])
    answer = json.loads(result.as_numpy("output").ravel()[0])
    assert answer["is_fraud"] is True
    client.close()


def test_tritonclient_http_with_its_defaults_gets_json_answers(served):
    """tritonclient's plain ``infer(model, [input])`` asks for ``binary_data_output``: a
    parameter of the protocol's binary extension, not the model's (it was a 400 "unknown
    parameter(s) binary_data_output")."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served.mlserver_url.removeprefix("http://"))
    tensor = triton.InferInput("x", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([json.dumps({"a": 10}), json.dumps({"a": 1.5})],
                                        dtype=object), binary_data=False)
    try:
        result = client.infer("echo", [tensor])  # no outputs named: binary_data_output
        assert [json.loads(v) for v in result.as_numpy("output").ravel()] == [
            {"result": 20}, {"result": 3.0}]
        with pytest.raises(Exception, match="unknown parameter.s. colours"):
            client.infer("echo", [tensor], parameters={"colours": 4})  # the model's: refused
    finally:
        client.close()


TRITON_GRPC_CALL = """
import json, sys
import numpy as np
import tritonclient.grpc as triton

client = triton.InferenceServerClient(sys.argv[1])
tensor = triton.InferInput("x", [2], "BYTES")
tensor.set_data_from_numpy(np.array([json.dumps({"a": 10}), json.dumps({"a": 1.5})], dtype=object))
result = client.infer("echo", [tensor])
print(json.dumps([json.loads(v) for v in result.as_numpy("output").ravel()]))
"""


def test_tritonclient_over_grpc_gets_json_answers(served):
    """Over gRPC a BYTES answer must be bytes (MLServer refuses str there): the codec sends
    UTF-8 bytes, which REST still renders as the same JSON string.  In a process of its own:
    tritonclient's protobufs and MLServer's (imported by other tests) share names."""
    target = f"127.0.0.1:{served.env['MLPLATFORM_MLSERVER_GRPC_PORT']}"
    result = subprocess.run([sys.executable, "-c", TRITON_GRPC_CALL, target],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [{"result": 20}, {"result": 3.0}]


def test_notebook_path_matches_the_served_answer(registry, server):
    echo = mlflow.pyfunc.load_model("models:/echo@champion")
    assert echo.predict({"a": 10}) == {"result": 20}
    fraud = mlflow.pyfunc.load_model("models:/fraud@champion")
    assert fraud.predict(EXAMPLE_TRANSACTION) == server.predict("fraud", EXAMPLE_TRANSACTION)


def test_malformed_v2_request_is_a_4xx_the_client_raises(server):
    with pytest.raises(InferenceServerError) as raised:
        server.infer("echo", {"input": []})
    assert raised.value.status_code == 422
    assert "inputs" in raised.value.message


@pytest.mark.parametrize("data, message", [
    ({"b": 1}, 'field "a"'),
    ({"a": "ten"}, 'field "a" must be a number'),
])
def test_bad_data_for_echo_is_400_with_the_models_reason(server, data, message):
    with pytest.raises(InferenceServerError) as raised:
        server.predict("echo", data)
    assert raised.value.status_code == 400
    assert message in raised.value.message


def test_bad_transaction_is_400_naming_the_field(server):
    broken = {k: v for k, v in EXAMPLE_TRANSACTION.items() if k != "amount"}
    with pytest.raises(InferenceServerError) as raised:
        server.predict("fraud", broken)
    assert raised.value.status_code == 400
    assert "amount" in raised.value.message


def test_not_json_in_the_bytes_input_is_400(server):
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["{not json"]}]}
    with pytest.raises(InferenceServerError) as raised:
        server.infer("echo", body)
    assert raised.value.status_code == 400
    assert "not valid JSON" in raised.value.message


def test_unknown_model_is_404(server):
    with pytest.raises(InferenceServerError) as raised:
        server.predict("no-such-model", {"a": 1})
    assert raised.value.status_code == 404


def test_status_shows_models_ready(served):
    output = served.cli("status").stdout
    assert re.search(r"mlflow\s+healthy", output)
    assert re.search(r"mlserver\s+healthy", output)
    assert "echo/" in output and "READY" in output


def test_logs_show_each_component(served):
    assert "mlflow.log" in served.cli("logs").stdout
    assert served.cli("logs", "mlserver", "-n", "5").stdout.strip()


def test_credentials_never_appear_in_files_or_logs(served):
    for path in served.state_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".yaml", ".txt", ""):
            text = path.read_text(errors="ignore")
            assert S3_SECRET not in text, path
            assert S3_KEY not in text, path


def test_mlserver_config_for_a_hand_run_mlserver_start(served, tmp_path):
    """The guide's flow: generate the folder, then `mlserver start <folder>` serves the models."""
    import subprocess

    from mlplatform.scripts.processes import free_port
    from tests.support import BIN, stop, wait_for_http

    port = free_port()
    out = tmp_path / "config"
    result = served.cli("mlserver-config", "--out", str(out), "--model", "echo",
                        "--mlserver-http-port", str(port),
                        "--mlserver-grpc-port", str(free_port()),
                        "--mlserver-metrics-port", str(free_port()))
    assert f"MLFLOW_TRACKING_URI={served.mlflow_url} mlserver start {out}" in result.stdout
    assert json.loads((out / "settings.json").read_text())["load_models_at_startup"] is True
    assert [p.parent.name for p in out.glob("*/model-settings.json")] == ["echo"]

    env = {**served.env, "MLFLOW_TRACKING_URI": served.mlflow_url}
    process = subprocess.Popen([str(BIN / "mlserver"), "start", str(out)], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/v2/models/echo/ready", timeout=120, require_ok=True)
        assert MLServerClient(url).predict("echo", {"a": 4}) == {"result": 8}
    finally:
        stop(process)


def test_metadata_reads_provenance_back_from_the_registered_onnx_file(served, registry):
    version = registry.get_model_version_by_alias("fraud", "champion")
    found = json.loads(served.cli("metadata", "fraud", "--json").stdout)
    onnx, listed = found["onnx"], found["registry"]
    assert onnx["run_id"] == version.run_id == listed["run_id"]
    assert onnx["experiment_name"] == listed["experiment_name"] == "fraud"
    assert onnx["model_name"] == "fraud"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown.*", onnx["git_commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", onnx["saved_at"])
    table = served.cli("metadata", f"fraud/{version.version}").stdout
    assert "git_commit" in table and version.run_id in table


def test_metadata_of_a_model_without_onnx_is_a_clear_error(served):
    result = served.cli("metadata", "fraud_sklearn", check=False)
    assert result.returncode == 1
    assert "has no ONNX file" in result.stderr and "Traceback" not in result.stderr


def test_served_onnx_and_sklearn_fraud_agree(server):
    from mlplatform.pyfunc_models.fraud.data import generate_transactions
    from mlplatform.pyfunc_models.fraud.features import FEATURES

    rows = generate_transactions(1_000, seed=11)[list(FEATURES)].to_dict(orient="records")
    onnx, sklearn = server.predict("fraud", rows), server.predict("fraud_sklearn", rows)
    gaps = [abs(a["fraud_probability"] - b["fraud_probability"]) for a, b in zip(onnx, sklearn)]
    assert max(gaps) < 1e-5
    near_threshold = [a for a, b in zip(onnx, sklearn) if a["is_fraud"] != b["is_fraud"]]
    assert all(abs(a["fraud_probability"] - a["threshold"]) < 1e-5 for a in near_threshold)


def test_scenario_model_answers_label_and_probabilities(server):
    answer = server.predict("fraud_scenario", EXAMPLE_TRANSACTION)
    assert answer["scenario"] == "account_takeover"
    assert set(answer["probabilities"]) == {"legit", "card_testing", "account_takeover",
                                            "stolen_card"}
    assert server.predict("fraud_scenario", LEGIT)["scenario"] == "legit"


def test_mlservers_own_pd_tables_are_answered_as_columns(server):
    """A standard MLServer "pd" request: MLServer builds the DataFrame, the model answers columns."""
    body = {"parameters": {"content_type": "pd"}, "inputs": [
        {"name": name, "shape": [2], "datatype": "BYTES" if isinstance(value, str) else "FP64",
         "data": [value, value] if isinstance(value, str) else [float(value)] * 2}
        for name, value in EXAMPLE_TRANSACTION.items()]}
    answer = server.infer("fraud", body)
    columns = {output["name"]: output["data"] for output in answer["outputs"]}
    assert columns["is_fraud"] == [True, True]
    echo = server.infer("echo", {"parameters": {"content_type": "pd"}, "inputs": [
        {"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 2]}]})
    assert echo["outputs"][0]["data"] == ['{"result": 2}', '{"result": 4}']
