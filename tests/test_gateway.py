"""The gateway against a real stack: every route, every error code of the contract."""
from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import requests
from PIL import Image
from sklearn.datasets import load_digits, load_sample_image

from mlplatform.client.gateway import (
    AsyncGatewayClient,
    BadRequest,
    GatewayClient,
    ModelFailed,
    PayloadTooLarge,
    ServiceUnavailable,
)
from mlplatform.gateway.chunked import CHUNK_ROWS
from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES
from mlplatform.pyfunc_models.images.digits import digit_png
from mlplatform.scripts.processes import free_port
from tests.support import GATEWAY_BODY_LIMIT, start_gateway, stop

pytestmark = pytest.mark.stack  # every test here runs mlplatform or gateway processes

MODEL_FAILED = "модель не смогла обработать данные"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CSV_HEADER = ",".join(FEATURES).encode()
CSV_ROW = ",".join(str(EXAMPLE_TRANSACTION[f]).lower() if isinstance(EXAMPLE_TRANSACTION[f], bool)
                   else str(EXAMPLE_TRANSACTION[f]) for f in FEATURES).encode()


@pytest.fixture(scope="module")
def gateway(served):
    with GatewayClient(served.gateway_url) as client:
        yield client


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def transactions_csv(rows: int, seed: int, label: str = None) -> bytes:
    frame = generate_transactions(rows, seed=seed)
    columns = list(FEATURES) + ([label] if label else [])
    return frame[columns].to_csv(index=False).encode()


# ---------------------------------------------------------------- routes


def test_health_and_ready(served, gateway):
    assert requests.get(served.gateway_url + "/health").json() == {"status": "ok"}
    ready = requests.get(served.gateway_url + "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert gateway.is_ready()


def test_forward_json_uses_the_configured_model(served, gateway):
    assert gateway.forward({"a": 10}) == {"result": 20}
    response = requests.post(served.gateway_url + "/forward", json={"a": 1})
    assert response.headers["X-Model-Name"] == "echo" and response.headers["X-Model-Version"]


def test_forward_any_model_with_query(gateway):
    answer = gateway.forward(EXAMPLE_TRANSACTION, model="fraud_scenario")
    assert answer["scenario"] == "account_takeover"
    assert gateway.forward({"a": 2}, model="echo@champion") == {"result": 4}


def test_forward_image_to_image_returns_base64_png(gateway):
    photo = png(Image.fromarray(load_sample_image("flower.jpg")[:60, :80]), "JPEG")
    answer = gateway.forward(image=photo, model="image_quantize")
    assert answer["content_type"] == "image/png"
    import base64

    result = Image.open(io.BytesIO(base64.b64decode(answer["image"])))
    assert result.size == (80, 60)


def test_forward_image_to_json(gateway):
    digits = load_digits()
    answer = gateway.forward(image=digit_png(digits.data[5], scale=5), model="digits")
    assert answer["digit"] == digits.target[5]


def test_forward_batch_csv_keeps_order_with_row_ids(gateway):
    data = transactions_csv(300, seed=21)
    result = gateway.forward_batch(file=data, filename="tx.csv")
    assert result["model"] == "fraud" and result["rows"] == 300
    assert [r["row"] for r in result["results"]] == list(range(300))
    expected = gateway.forward_batch(
        pd.read_csv(io.BytesIO(data)).iloc[[7]].to_dict(orient="records"))["results"][0]
    assert result["results"][7]["fraud_probability"] == expected["fraud_probability"]


def test_forward_batch_json_list_and_id_column(gateway):
    rows = [{**EXAMPLE_TRANSACTION, "id": "t-1"}, {**EXAMPLE_TRANSACTION, "id": "t-2"}]
    result = gateway.forward_batch(rows)
    assert [(r["row"], r["id"]) for r in result["results"]] == [(0, "t-1"), (1, "t-2")]
    assert all("fraud_probability" in r for r in result["results"])
    csv = pd.DataFrame(rows).to_csv(index=False).encode()
    from_csv = gateway.forward_batch(file=csv, filename="tx.csv")
    assert [r["id"] for r in from_csv["results"]] == ["t-1", "t-2"]
    echo = gateway.forward_batch([{"a": 1}, {"a": 5}], model="echo")
    assert [r["result"] for r in echo["results"]] == [2, 10]


def test_forward_batch_zip_of_images(gateway, tmp_path):
    digits = load_digits()
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for i in range(12):
            zipped.writestr(f"img{i:02d}.png", digit_png(digits.data[i], scale=5))
    result = gateway.forward_batch(file=archive, model="digits", progress=True)
    assert [r["file"] for r in result["results"]] == [f"img{i:02d}.png" for i in range(12)]
    assert sum(r["digit"] == digits.target[i] for i, r in enumerate(result["results"])) >= 10


def test_evaluate_binary_csv(gateway):
    report = gateway.evaluate(file=transactions_csv(2000, seed=8, label="fraud"),
                              filename="tx.csv", label="fraud")
    metrics = report["metrics"]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(metrics)
    assert metrics["rows"] == 2000 and metrics["roc_auc"] > 0.8
    assert sum(map(sum, metrics["confusion_matrix"])) == 2000


def test_evaluate_multiclass_with_default_label_column(gateway):
    frame = generate_transactions(1500, seed=9)
    data = frame[list(FEATURES) + ["scenario"]].rename(columns={"scenario": "label"})
    report = gateway.evaluate(file=data.to_csv(index=False).encode(), filename="s.csv",
                              model="fraud_scenario")
    metrics = report["metrics"]
    assert set(metrics["per_class"]) == {"legit", "card_testing", "account_takeover", "stolen_card"}
    assert 0.5 < metrics["macro_f1"] <= 1 and len(metrics["confusion_matrix"]) == 4


@pytest.mark.parametrize("layout", ["folders", "labels.csv"])
def test_evaluate_zip_of_images(gateway, layout):
    digits = load_digits()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        lines = ["file,label"]
        for i in range(20):
            name = f"{digits.target[i]}/d{i}.png" if layout == "folders" else f"d{i}.png"
            zipped.writestr(name, digit_png(digits.data[i], scale=5))
            lines.append(f"{name},{digits.target[i]}")
        if layout == "labels.csv":
            zipped.writestr("labels.csv", "\n".join(lines))
    report = gateway.evaluate(file=buffer.getvalue(), filename="d.zip", model="digits")
    assert report["metrics"]["accuracy"] >= 0.8 and "per_class" in report["metrics"]


def test_metadata(gateway):
    found = gateway.metadata(model="fraud")
    assert found["model_name"] == "fraud" and "champion" in found["aliases"]
    assert found["experiment_name"] == "fraud" and found["run_id"]
    assert found["commit_hash"] and found["saved_at"].endswith("+00:00")
    assert found["input_example"]["merchant_category"] == "electronics"
    echo = gateway.metadata()
    assert echo["model_name"] == "echo" and echo["commit_hash"] is None
    assert echo["input_example"] == {"a": 10}


def test_predict_and_predict_scenario(gateway):
    assert gateway.predict(EXAMPLE_TRANSACTION)["is_fraud"] is True
    assert gateway.predict_scenario(EXAMPLE_TRANSACTION)["scenario"] == "account_takeover"


def test_async_client_twin(served):
    async def ask():
        async with AsyncGatewayClient(served.gateway_url) as client:
            return await asyncio.gather(client.forward({"a": 3}), client.predict(EXAMPLE_TRANSACTION))
    echo, fraud = asyncio.run(ask())
    assert echo == {"result": 6} and "fraud_probability" in fraud


def test_simultaneous_forwards_each_get_their_own_answer(served):
    """A burst of 24 simultaneous /forward calls, every fourth one bad: whether or not they
    share V2 requests (that they do is pinned down in test_gateway_routes.py, with the
    model server held until the burst is queued), each caller gets exactly its own
    answer or its own error -- never a neighbour's."""
    callers = 24
    sessions = [requests.Session() for _ in range(callers)]
    for session in sessions:  # open every connection before the burst
        session.post(served.gateway_url + "/forward?model=echo", json={"a": 0}, timeout=30)
    barrier, answers = threading.Barrier(callers), [None] * callers

    def call(n: int) -> None:
        barrier.wait()
        answers[n] = sessions[n].post(served.gateway_url + "/forward?model=echo",
                                      json={"a": n} if n % 4 else {"b": n}, timeout=30)
    threads = [threading.Thread(target=call, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for session in sessions:
        session.close()
    for n, response in enumerate(answers):
        if n % 4:
            assert response.status_code == 200 and response.json() == {"result": 2 * n}
        else:
            assert response.status_code == 403 and 'field "a"' in response.json()["reason"]


def test_openapi_carries_examples(served):
    spec = requests.get(served.gateway_url + "/openapi.json").json()
    for route in ("/forward", "/forward_batch", "/evaluate", "/predict", "/predict_scenario"):
        content = spec["paths"][route]["post"]["requestBody"]["content"]
        assert content["application/json"]["examples"], route


# ---------------------------------------------------------------- 400


@pytest.mark.parametrize("call, field", [
    (lambda s: requests.post(s + "/forward", data=b"{not json"), "body"),
    (lambda s: requests.post(s + "/forward", data=b""), "body"),
    (lambda s: requests.post(s + "/forward?model=nosuch", json={}), "model"),
    (lambda s: requests.post(s + "/forward?model=digits", files={"picture": b"x"}), "image"),
    (lambda s: requests.post(s + "/forward?model=digits", json={"a": 1}), "image"),
    (lambda s: requests.post(s + "/forward?model=echo", files={"image": b"x"}), "image"),
    (lambda s: requests.post(s + "/forward_batch", files={"file": ("t.csv", b"a,b\n")}), "file"),
    (lambda s: requests.post(s + "/forward_batch", files={"file": ("t.csv", b"\xff\xfe\x00")}),
     "file"),
    (lambda s: requests.post(s + "/forward_batch", files={"nofile": ("t.csv", b"a\n1\n")}), "file"),
    (lambda s: requests.post(s + "/forward_batch?model=digits",
                             files={"file": ("x.zip", b"PK\x03\x04 broken")}), "file"),
    (lambda s: requests.post(s + "/evaluate", json=[EXAMPLE_TRANSACTION]), "label"),
    (lambda s: requests.post(s + "/predict", json=[EXAMPLE_TRANSACTION]), "body"),
    # Each of these was a 500 with a traceback (hardening issue):
    (lambda s: requests.post(s + "/forward_batch", json=[{"amount": [1]}]), "amount"),
    (lambda s: requests.post(s + "/forward_batch", json=[{"amount": {"y": 1}}]), "amount"),
    (lambda s: requests.post(s + "/forward_batch", files={"file": (
        "ids.csv", CSV_HEADER + b",id\n" + CSV_ROW + b",\n")}), "id"),
    (lambda s: requests.post(s + "/evaluate", files={"file": (
        "labels.csv", CSV_HEADER + b",label\n" + CSV_ROW + b",\n")}), "label"),
    (lambda s: requests.post(s + "/forward", data=b"[" * 1000 + b"]" * 1000), "body"),
    (lambda s: requests.post(s + "/predict", data=b'{"a":' * 1000 + b"1" + b"}" * 1000), "body"),
    (lambda s: requests.post(s + "/forward_batch?model=echo", data=b"[" * 999 + b"]" * 999),
     "body"),
    (lambda s: requests.post(s + "/forward?model=echo@@x", json={}), "model"),
    (lambda s: requests.post(s + "/forward?model=echo@nosuch", json={}), "model"),
])
def test_bad_requests_are_400(served, call, field):
    response = call(served.gateway_url)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "bad request" and body["field"] == field and body["detail"]


def test_a_non_finite_answer_is_a_model_failure_not_null(served):
    response = requests.post(served.gateway_url + "/forward", json={"a": 1.7e308})
    assert response.status_code == 403, response.text
    assert "NaN or infinity" in response.json()["reason"]


def test_a_model_failure_does_not_echo_a_huge_input(served):
    """The fraud model names the bad value in its reason; 3 MB of it must not come back."""
    response = requests.post(served.gateway_url + "/predict",
                             json={**EXAMPLE_TRANSACTION, "amount": "x" * 3_000_000})
    assert response.status_code == 403
    reason = response.json()["reason"]
    assert reason.startswith("transaction: field 'amount' must be a number")
    assert reason.endswith("more characters)") and len(response.content) < 5_000


def test_a_registered_model_that_is_not_served_is_503(served):
    served.cli("import", str(EXAMPLES / "neomaril_credit"), "--name", "credit_not_deployed")
    response = requests.post(served.gateway_url + "/forward?model=credit_not_deployed",
                             json={"income": 1})
    assert response.status_code == 503
    assert "registered but not served" in response.json()["detail"]
    assert "mlplatform deploy --model credit_not_deployed" in response.json()["detail"]


@pytest.mark.parametrize("entry", ["/etc/passwd.png", "../up.png", "a/../../b.png"])
def test_zip_entries_escaping_the_archive_are_400(served, entry):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(entry, b"x")
    response = requests.post(served.gateway_url + "/forward_batch?model=digits",
                             files={"file": ("e.zip", buffer.getvalue())})
    assert response.status_code == 400 and "absolute path or '..'" in response.json()["detail"]


def test_a_zip_of_too_many_entries_is_413_naming_the_limit(served):
    """50,000 empty entries fit under the test gateway's 8 MB body limit (300,000 are the
    unit test's and the bench's)."""
    from tests.zips import many_entries_zip

    crowded = many_entries_zip(50_000)
    assert len(crowded) < GATEWAY_BODY_LIMIT
    response = requests.post(served.gateway_url + "/forward_batch?model=digits",
                             files={"file": ("many.zip", crowded)})
    assert response.status_code == 413
    assert response.json()["limit_entries"] == 10_000
    assert "declares 50000 entries" in response.json()["detail"]


def test_client_raises_typed_400(gateway):
    with pytest.raises(BadRequest) as raised:
        gateway.forward({"a": 1}, model="nosuch")
    assert raised.value.status_code == 400 and "unknown model" in raised.value.detail


# ---------------------------------------------------------------- 403


@pytest.mark.parametrize("call, reason", [
    (lambda g: g.forward({"b": 1}), 'field "a"'),
    (lambda g: g.forward(image=b"not an image at all", model="digits"), "not a PNG or JPEG"),
    (lambda g: g.predict({"amount": 5}), "missing field"),
    (lambda g: g.forward_batch([{"a": 1}, {"b": 2}], model="echo"), 'field "a"'),
])
def test_model_failures_are_403_with_the_reason(gateway, call, reason):
    with pytest.raises(ModelFailed) as raised:
        call(gateway)
    assert raised.value.status_code == 403
    assert raised.value.message == MODEL_FAILED and reason in raised.value.detail


# ---------------------------------------------------------------- 413


def test_body_over_the_limit_is_413(served, gateway):
    big = b"0" * (GATEWAY_BODY_LIMIT + 1)
    response = requests.post(served.gateway_url + "/forward", data=big,
                             headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["limit_bytes"] == GATEWAY_BODY_LIMIT

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(GATEWAY_BODY_LIMIT // 1_000_000 + 2):
            yield b"1" * 1_000_000
    response = requests.post(served.gateway_url + "/forward_batch", data=chunks(),
                             headers={"content-type": "text/csv"})
    assert response.status_code == 413
    with pytest.raises(PayloadTooLarge):
        gateway.forward_batch(file=big, filename="big.csv")


# ---------------------------------------------------------------- 503


def test_mlserver_unreachable_is_503_quickly(tmp_path):
    process, url = start_gateway(tmp_path, f"http://127.0.0.1:{free_port()}")
    try:
        started = time.monotonic()
        response = requests.post(url + "/forward", json={"a": 1}, timeout=30)
        assert response.status_code == 503 and time.monotonic() - started < 10
        assert response.json()["message"] == "model server unavailable"
        assert requests.get(url + "/ready").status_code == 503
        assert requests.get(url + "/health").status_code == 200
        with pytest.raises(ServiceUnavailable):
            GatewayClient(url).forward({"a": 1})
    finally:
        stop(process)


def test_mlserver_hanging_is_503_within_the_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    stop_flag = threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.5)
        while not stop_flag.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    process, url = start_gateway(tmp_path, f"http://127.0.0.1:{listener.getsockname()[1]}",
                                 timeout=1.5)
    try:
        started = time.monotonic()
        response = requests.post(url + "/forward", json={"a": 1}, timeout=30)
        elapsed = time.monotonic() - started
        assert response.status_code == 503 and elapsed < 8, (response.status_code, elapsed)
        assert "did not answer in time" in response.json()["detail"]
    finally:
        stop(process)
        stop_flag.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_batches_go_as_columns_and_match_single_answers(gateway):
    frame = generate_transactions(50, seed=31)[list(FEATURES)]
    batch = gateway.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
    singles = [gateway.predict(row) for row in frame.iloc[:5].to_dict(orient="records")]
    assert [{k: v for k, v in r.items() if k != "row"} for r in batch["results"][:5]] == singles
    scenario = gateway.forward_batch(frame.to_dict(orient="records"), model="fraud_scenario")
    assert set(scenario["results"][0]["probabilities"]) == {
        "legit", "card_testing", "account_takeover", "stolen_card"}


def test_bad_value_in_a_batch_names_column_and_row(gateway):
    frame = generate_transactions(10, seed=32)[list(FEATURES)]
    frame.loc[6, "hour"] = 99
    with pytest.raises(ModelFailed) as raised:
        gateway.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
    assert "column 'hour'" in raised.value.detail and "rows 6" in raised.value.detail


def test_table_batches_over_rest_and_grpc_agree(served, gateway, tmp_path):
    """The stack's gateway sends a table over gRPC in one request; one without a gRPC
    address sends it as JSON, here in parts of at most 1,000 bytes (~15 rows) each."""
    frame = generate_transactions(300, seed=33)[list(FEATURES)]
    upload = frame.to_csv(index=False).encode()
    process, url = start_gateway(tmp_path, served.mlserver_url, timeout=20,
                                 tracking_uri=served.mlflow_url, mlserver_grpc="",
                                 table_request_bytes="1000")
    try:
        over_rest = GatewayClient(url)
        for model in ("fraud", "fraud_scenario"):
            grpc_answer = gateway.forward_batch(file=upload, filename="t.csv", model=model)
            rest_answer = over_rest.forward_batch(file=upload, filename="t.csv", model=model)
            assert grpc_answer["results"] == rest_answer["results"]
            assert len(grpc_answer["results"]) == 300
    finally:
        stop(process)


def test_missing_text_cell_in_a_batch_names_column_and_row(gateway):
    frame = generate_transactions(10, seed=34)[list(FEATURES)]
    frame.loc[4, "country"] = None
    with pytest.raises(ModelFailed) as raised:
        gateway.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
    assert "column 'country'" in raised.value.detail and "rows 4" in raised.value.detail


def test_grpc_unreachable_is_503_for_batches_while_singles_still_work(served, tmp_path):
    process, url = start_gateway(tmp_path, served.mlserver_url, timeout=5,
                                 tracking_uri=served.mlflow_url,
                                 mlserver_grpc=f"127.0.0.1:{free_port()}")
    try:
        client = GatewayClient(url)
        assert client.forward({"a": 2}, model="echo") == {"result": 4}
        frame = generate_transactions(10, seed=35)[list(FEATURES)]
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as raised:
            client.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
        assert time.monotonic() - started < 10
        assert "unreachable over gRPC" in raised.value.detail
    finally:
        stop(process)


# ---------------------------------------------------------------- CSVs larger than a chunk

def big_frame(rows: int, seed: int) -> pd.DataFrame:
    frame = generate_transactions(rows, seed=seed)[list(FEATURES) + ["fraud"]]
    frame.insert(0, "id", [f"t{i}" for i in range(rows)])
    return frame


def test_a_csv_of_several_chunks_is_answered_whole_in_row_order(served, gateway):
    rows = 2 * CHUNK_ROWS + 1234
    frame = big_frame(rows, seed=41)
    upload = frame.drop(columns=["fraud"]).to_csv(index=False).encode()
    response = requests.post(served.gateway_url + "/forward_batch", data=upload,
                             headers={"Content-Type": "text/csv"}, timeout=300)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    answer = response.json()
    assert answer["rows"] == rows and len(answer["results"]) == rows
    assert [r["row"] for r in answer["results"]] == list(range(rows))
    assert [r["id"] for r in answer["results"]] == frame["id"].tolist()
    sample = [0, CHUNK_ROWS - 1, CHUNK_ROWS, rows - 1]  # both sides of each chunk boundary
    singles = [gateway.predict(frame.drop(columns=["id", "fraud"]).iloc[i].to_dict())
               for i in sample]
    assert [{k: v for k, v in answer["results"][i].items() if k not in ("row", "id")}
            for i in sample] == singles
    report = gateway.evaluate(file=frame.to_csv(index=False).encode(), filename="big.csv",
                              label="fraud")
    assert report["metrics"]["rows"] == rows == len(report["results"])
    assert report["results"][-1]["label"] == int(frame["fraud"].iloc[-1])


def test_a_bad_row_in_a_late_chunk_is_a_4xx_naming_it_in_the_whole_file(gateway):
    rows = CHUNK_ROWS + 500
    frame = big_frame(rows, seed=42).drop(columns=["fraud"])
    last = rows - 3
    frame.loc[last, "hour"] = 99
    with pytest.raises(ModelFailed) as raised:
        gateway.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
    assert "column 'hour'" in raised.value.detail and f"rows {last}" in raised.value.detail
    frame.loc[last, "hour"] = 3
    frame.loc[last, "id"] = None
    with pytest.raises(BadRequest) as raised:
        gateway.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
    assert f"row(s) {last}" in raised.value.detail and "'id'" in raised.value.detail


def test_of_two_problems_in_two_chunks_the_earlier_rows_are_told(gateway):
    """The next chunk is read while the model scores this one: a bad cell in chunk 1
    must not hide the model's refusal of a row in chunk 0."""
    frame = big_frame(CHUNK_ROWS + 500, seed=43).drop(columns=["fraud"])
    frame.loc[5, "hour"] = 99
    frame.loc[CHUNK_ROWS + 7, "id"] = None
    with pytest.raises(ModelFailed) as raised:
        gateway.forward_batch(file=frame.to_csv(index=False).encode(), filename="t.csv")
    assert "column 'hour'" in raised.value.detail and "rows 5)" in raised.value.detail
