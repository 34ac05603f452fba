"""The prediction log, input drift and the live view: in process with the V2 stand-in
(what is written, paging, bounds, a database outage, the drift verdicts on a synthetic
stream with one shifted feature), and on the real stack (fraud's registered profile,
its log entries read back through /predictions)."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import requests
from fastapi.testclient import TestClient

from mlplatform.gateway.app import build, create_app
from mlplatform.gateway.drift import DriftMonitor
from mlplatform.gateway.prediction_log import Entry, PredictionLog
from mlplatform.gateway.settings import GatewaySettings
from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES, feature_frame
from mlplatform.pyfunc_models.profile import reference_profile
from mlplatform.scripts.processes import free_port
from tests.test_gateway_routes import FakeRegistry, FakeV2
from tests.test_metrics import samples

SHIFTED = "amount"


def gateway_app(tmp_path, **overrides):
    settings = GatewaySettings(database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
                               feature_store_url=f"sqlite:///{tmp_path / 'features.db'}",
                               jobs_storage=str(tmp_path / "jobs"), mlserver_grpc="",
                               forward_model="echo", **overrides)
    registry = FakeRegistry(served="1", aliases={"champion": "1"})
    gateway = build(settings, upstream=FakeV2({"echo": ["1"]}), registry=registry)
    return create_app(settings, gateway), gateway, registry


def flushed(gateway) -> None:
    asyncio.run(gateway.monitoring.log.flush())


@pytest.fixture(scope="module")
def training_profile():
    """The profile registration stores, from fraud's training features."""
    return reference_profile(feature_frame(generate_transactions(20_000, 42)))


def live_transactions(count: int, seed: int, shift: bool):
    rows = generate_transactions(count, seed)[list(FEATURES)].to_dict("records")
    for row in rows:
        row["a"] = 1  # what the echo stand-in answers from
        if shift:
            row[SHIFTED] = row[SHIFTED] * 4 + 500
    return rows


@pytest.mark.unit
def test_every_answer_is_logged_and_paged_with_a_token(tmp_path):
    app, gateway, _ = gateway_app(tmp_path)
    with TestClient(app) as client:
        token = gateway.store.create_token("ops", ["predictions:read"])[1]
        for n in range(5):
            response = client.post("/forward", json={"a": n},
                                   headers={"X-Request-ID": f"call-{n}"})
            assert response.status_code == 200
        flushed(gateway)
        assert client.get("/predictions").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        first = client.get("/predictions", params={"limit": 3}, headers=auth).json()
        assert [p["request_id"] for p in first["predictions"]] == ["call-0", "call-1", "call-2"]
        entry = first["predictions"][1]
        assert entry["model"] == "echo" and entry["version"] == "1"
        assert entry["route"] == "/forward" and entry["inputs"] == {"a": 1}
        assert entry["outputs"] == {"result": 2, "v": "1"} and entry["latency_ms"] > 0
        rest = client.get(first["next"], headers=auth).json()
        assert [p["inputs"]["a"] for p in rest["predictions"]] == [3, 4]
        assert rest["next"] is None
        assert client.get("/predictions", params={"model": "other"},
                          headers=auth).json()["predictions"] == []
        later = client.get("/predictions", params={"since": str(time.time() + 60)},
                           headers=auth).json()
        assert later["predictions"] == []
        bad = client.get("/predictions", params={"since": "yesterday"}, headers=auth)
        assert bad.status_code == 400 and bad.json()["field"] == "since"


@pytest.mark.unit
def test_batch_rows_are_logged_one_per_row(tmp_path):
    app, gateway, _ = gateway_app(tmp_path)
    with TestClient(app) as client:
        token = gateway.store.create_token("ops", ["predictions:read"])[1]
        rows = [{"id": f"r{n}", "a": n} for n in range(4)]
        assert client.post("/forward_batch?model=echo", json=rows).status_code == 200
        flushed(gateway)
        found = client.get("/predictions", headers={"Authorization": f"Bearer {token}"}).json()
    logged = found["predictions"]
    assert [p["inputs"]["id"] for p in logged] == ["r0", "r1", "r2", "r3"]
    assert {p["route"] for p in logged} == {"/forward_batch"}
    assert [p["outputs"]["result"] for p in logged] == [0, 2, 4, 6]


@pytest.mark.unit
def test_a_full_queue_drops_the_oldest_and_counts_them():
    dropped = []
    log = PredictionLog("sqlite://", max_pending=3, retention_days=0,
                        on_drop=lambda reason, count: dropped.append((reason, count)))
    for n in range(5):
        log.record(Entry(time.time(), "m", "1", "/forward", None, 0.001, {"n": n}, {}))
    assert [e.inputs["n"] for e in log.pending] == [2, 3, 4]
    assert dropped == [("full", 1), ("full", 1)]
    log.record(Entry(time.time(), "m", "1", "/forward_batch", None, 0.01,
                     [{"n": n} for n in range(10)], list(range(10)), rows=10))
    assert log.pending_count == 3
    assert list(log.pending)[0].inputs == [{"n": 7}, {"n": 8}, {"n": 9}]


@pytest.mark.unit
def test_the_log_is_written_by_a_process_of_its_own_which_comes_back_if_killed(tmp_path):
    """The JSON and INSERT work runs outside the gateway's process (its GIL); a writer that
    dies is started again by the next write, and what it was given is not lost."""
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", max_pending=100, retention_days=0)

    async def scenario():
        await log.start()
        assert log.writer._process is None  # started by the first write
        log.record(Entry(time.time(), "m", "1", "/forward", "r1", 0.001, {"n": 1}, {"ok": 1}))
        await log.flush()
        writer = log.writer._process
        assert writer.is_alive() and writer.pid != os.getpid()
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=30)
        log.record(Entry(time.time(), "m", "1", "/forward", "r2", 0.001, {"n": 2}, {"ok": 2}))
        await log.flush()
        restarted = log.writer._process
        await log.stop()
        return writer, restarted

    killed, restarted = asyncio.run(scenario())
    assert restarted.pid != killed.pid and not restarted.is_alive()  # stopped with the log
    assert [row["inputs"] for row in log.page(None, None, 0, 10)] == [{"n": 1}, {"n": 2}]
    assert log.written == 2


@pytest.mark.unit
def test_a_running_batch_route_holds_the_writes_for_a_while_only():
    log = PredictionLog("sqlite://", max_pending=100, retention_days=0)
    now = time.time()
    log.record(Entry(now, "m", "1", "/forward_batch", None, 0.1, [{"n": 1}], [{}], rows=1))
    assert not log.holding(now)            # no batch running: write
    with log.batch_running():
        assert log.holding(now + 1)        # a batch is running: its answer first
        assert not log.holding(now + 6)    # but never more than MAX_DEFER_SECONDS behind
    assert not log.holding(now + 1)


@pytest.mark.unit
def test_a_database_outage_never_fails_a_prediction(tmp_path):
    nobody = f"postgresql+psycopg://mlplatform@127.0.0.1:{free_port()}/predictions"
    app, gateway, _ = gateway_app(tmp_path, prediction_log_url=nobody)
    with TestClient(app) as client:
        for n in range(3):
            assert client.post("/forward", json={"a": n}).status_code == 200
        flushed(gateway)
        text = client.get("/metrics").text
        token = gateway.store.create_token("ops", ["predictions:read"])[1]
        unreadable = client.get("/predictions", headers={"Authorization": f"Bearer {token}"})
    dropped = samples(text, "mlplatform_gateway_prediction_log_dropped_total")
    assert dropped[frozenset({"reason": "database"}.items())] == 3
    assert unreadable.status_code == 503
    assert "prediction log's database cannot be read" in unreadable.json()["detail"]


@pytest.mark.unit
def test_the_shifted_feature_drifts_and_the_others_stay_stable(tmp_path, training_profile):
    app, gateway, registry = gateway_app(tmp_path, drift_window=1000)
    registry.profile = training_profile
    with TestClient(app) as client:
        for row in live_transactions(1000, seed=7, shift=True):
            assert client.post("/forward", json=row).status_code == 200
        report = client.get("/monitoring/drift", params={"model": "echo"}).json()
        text = client.get("/metrics").text
    assert report["inputs"] == 1000 and report["window"] == 1000
    features = report["features"]
    assert set(features) == set(FEATURES)
    assert features[SHIFTED]["psi"] > 0.2 and features[SHIFTED]["verdict"] == "drift"
    for name in set(FEATURES) - {SHIFTED}:
        assert features[name]["psi"] < 0.1 and features[name]["verdict"] == "stable", name
    assert report["verdict"] == "drift"
    gauge = samples(text, "mlplatform_gateway_input_drift_psi")
    assert gauge[frozenset({"model": "echo", "version": "1", "feature": SHIFTED}.items())] > 0.2
    assert len([labels for labels in gauge if ("model", "echo") in labels]) == len(FEATURES)


@pytest.mark.unit
def test_unshifted_live_inputs_are_stable(tmp_path, training_profile):
    app, gateway, registry = gateway_app(tmp_path)
    registry.profile = training_profile
    with TestClient(app) as client:
        for row in live_transactions(1000, seed=11, shift=False):
            client.post("/forward", json=row)
        report = client.get("/monitoring/drift", params={"model": "echo"}).json()
    assert report["verdict"] == "stable"
    assert max(f["psi"] for f in report["features"].values()) < 0.1


@pytest.mark.unit
def test_drift_without_a_profile_is_404_and_too_few_have_no_verdict(tmp_path, training_profile):
    app, gateway, registry = gateway_app(tmp_path, drift_min_inputs=50)
    with TestClient(app) as client:
        client.post("/forward", json={"a": 1})
        missing = client.get("/monitoring/drift", params={"model": "echo"})
        assert missing.status_code == 404
        assert "echo version 1 has no reference profile" in missing.json()["detail"]
        registry.profile = training_profile
        gateway.monitoring.drift._profiles.clear()  # the 404 is remembered for 30 s
        early = client.get("/monitoring/drift", params={"model": "echo"}).json()
        assert early["verdict"] is None and early["inputs"] == 1
        assert "needs 50" in early["reason"]
        unknown = client.get("/monitoring/drift", params={"model": "nosuch"})
        assert unknown.status_code == 400


@pytest.mark.unit
def test_a_window_without_input_for_the_idle_time_is_forgotten():
    monitor = DriftMonitor(registry=None, window=10, min_inputs=1, idle=60)
    monitor.observe("m", "1", {"x": 1})
    monitor.observe("m", "2", {"x": 1})
    monitor.expire_idle(now=1000)          # both seen now
    monitor.observe("m", "2", {"x": 2})    # only version 2 keeps getting inputs
    monitor.expire_idle(now=1050)
    assert set(monitor.windows) == {("m", "1"), ("m", "2")}
    monitor.expire_idle(now=1070)          # version 1: 70 s without input
    assert set(monitor.windows) == {("m", "2")}
    monitor.expire_idle(now=1200)
    assert not monitor.windows


@pytest.mark.unit
def test_batch_tables_join_the_window_in_input_order_when_it_is_read():
    import pandas as pd

    monitor = DriftMonitor(registry=None, window=5, min_inputs=1, idle=60)

    def chunk(first: int, rows: int) -> pd.DataFrame:
        return pd.DataFrame({"x": range(first, first + rows)})

    monitor.observe("m", "1", {"x": -1})
    monitor.observe_frame("m", "1", chunk(0, 3))
    monitor.observe_frame("m", "1", chunk(3, 4))
    assert len(monitor._frames[("m", "1")]) == 2  # kept as tables until read
    monitor.observe_frame("m", "1", chunk(7, 2))
    assert len(monitor._frames[("m", "1")]) == 2  # the first is out of the window for good
    monitor.observe("m", "1", {"x": 9})            # a single call after the batch
    assert [row["x"] for row in monitor.windows[("m", "1")]] == [5, 6, 7, 8, 9]
    monitor.observe_frame("m", "1", chunk(10, 100))
    monitor.expire_idle(now=1000)
    monitor.expire_idle(now=1100)                  # a table counts as input: kept...
    monitor.observe_frame("m", "1", chunk(110, 1))
    monitor.expire_idle(now=1130)
    assert ("m", "1") in monitor.windows
    monitor.expire_idle(now=1200)                  # ...until none comes for the idle time
    assert not monitor.windows and not monitor._frames


@pytest.mark.unit
def test_the_live_view_reports_rate_latency_and_errors(tmp_path):
    app, gateway, _ = gateway_app(tmp_path)
    with TestClient(app) as client:
        for n in range(20):
            client.post("/forward", json={"a": n})
        gateway.upstream.loaded["echo"] = []  # the model server lost the model: 503s
        for n in range(5):
            assert client.post("/forward", json={"a": n}).status_code == 503
        live = client.get("/monitoring/live").json()
    echo = live["models"]["echo"]
    assert echo["requests"] == 25 and echo["requests_per_second"] > 0
    assert 0 < echo["p50_ms"] <= echo["p99_ms"]
    assert echo["error_rate"] == 0.2  # the 503s name the model they were for


@pytest.mark.unit
def test_monitoring_off_records_nothing(tmp_path):
    app, gateway, _ = gateway_app(tmp_path, monitoring=False)
    with TestClient(app) as client:
        assert client.post("/forward", json={"a": 1}).status_code == 200
        text = client.get("/metrics").text
    assert gateway.monitoring.log is None
    assert not samples(text, "mlplatform_gateway_requests_total")
    assert not gateway.monitoring.drift.windows


def test_fraud_is_registered_with_a_profile_and_its_answers_are_logged(served):
    token = served.cli("token", "create", "--group", "monitoring", "--scope",
                       "predictions:read").stdout.strip().splitlines()[-1]
    started = time.time()
    # a whole window of unshifted inputs: the verdict is about these alone, whatever
    # earlier tests sent to fraud
    rows = live_transactions(1000, seed=3, shift=False)
    with requests.Session() as session:
        for row in rows:
            answer = session.post(served.gateway_url + "/predict", json=row, timeout=30)
            assert answer.status_code == 200, answer.text
    version = answer.headers["x-model-version"]
    report = requests.get(served.gateway_url + "/monitoring/drift", params={"model": "fraud"},
                          timeout=30).json()
    assert report["version"] == version and report["inputs"] == 1000
    assert set(report["features"]) == set(FEATURES) and report["verdict"] == "stable"
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:  # the log is written every 0.5 s, off the request path
        logged = requests.get(served.gateway_url + "/predictions", headers=auth, timeout=30,
                              params={"model": "fraud", "since": str(started),
                                      "limit": 1000}).json()["predictions"]
        if len(logged) >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(logged) == len(rows)
    assert logged[0]["inputs"]["amount"] == rows[0]["amount"]
    assert "fraud_probability" in logged[0]["outputs"] and logged[0]["version"] == version
    table = generate_transactions(30, 4)[list(FEATURES)]
    csv = table.assign(id=[f"t{n}" for n in range(30)]).to_csv(index=False).encode()
    batch = requests.post(served.gateway_url + "/forward_batch?model=fraud", timeout=60,
                          files={"file": ("rows.csv", csv, "text/csv")})
    assert batch.status_code == 200, batch.text
    deadline = time.monotonic() + 30
    while True:
        from_batch = requests.get(served.gateway_url + "/predictions", headers=auth, timeout=30,
                                  params={"model": "fraud", "after": logged[-1]["id"],
                                          "limit": 1000}).json()["predictions"]
        if len(from_batch) >= 30 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [p["inputs"]["id"] for p in from_batch] == [f"t{n}" for n in range(30)]
    assert {p["route"] for p in from_batch} == {"/forward_batch"}
    assert "fraud_probability" in from_batch[0]["outputs"]
    echo = requests.get(served.gateway_url + "/monitoring/drift", params={"model": "echo"},
                        timeout=30)
    assert echo.status_code == 404 and "no reference profile" in echo.json()["detail"]
    assert EXAMPLE_TRANSACTION  # the route's model takes the catalog's transactions


@pytest.mark.browser
def test_the_live_tab_shows_rate_latency_and_the_drift_verdict(served, browser):
    """The web page's Live tab in headless Chromium, after a stream whose amounts are
    shifted: fraud's row shows its request rate, latencies and 'drift: amount ...'."""
    with requests.Session() as session:
        for row in live_transactions(500, seed=21, shift=True):
            assert session.post(served.gateway_url + "/predict", json=row,
                                timeout=30).status_code == 200
    page = browser.new_page()
    page.goto(served.gateway_url + "/")
    page.click("#tab-live")
    row = "#live tr[data-model=fraud]"
    page.wait_for_selector(f"{row} .verdict span.drift")
    cells = page.locator(f"{row} td").all_inner_texts()
    assert float(cells[1]) > 0                      # requests per second
    assert float(cells[2]) > 0 and float(cells[3]) >= float(cells[2])  # p50 <= p99
    assert cells[4].endswith(" %")  # the 5xx share
    assert "drift" in cells[5] and SHIFTED in cells[5]
    page.close()
