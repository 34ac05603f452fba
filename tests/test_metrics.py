"""The gateway's Prometheus metrics: in process with the V2 stand-in (labels, bounds,
sharing sizes), and on the real stack (fraud's score distribution)."""
from __future__ import annotations

import asyncio

import httpx
import pytest
import requests
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlplatform.gateway.app import create_app
from mlplatform.gateway.metrics import MAX_CLASSES, OTHER, GatewayMetrics
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from tests.test_gateway_routes import parts  # noqa: F401 -- the stand-in fixture


def samples(text: str, name: str):
    """{frozenset(labels): value} of one sample name."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[frozenset(sample.labels.items())] = sample.value
    return found


@pytest.mark.unit
def test_requests_are_counted_by_route_template_model_and_code(parts):  # noqa: F811
    settings, upstream, _, gateway = parts
    with TestClient(create_app(settings, gateway)) as client:
        assert client.post("/forward", json={"a": 1}).status_code == 200
        assert client.post("/forward?model=nosuch", json={"a": 1}).status_code == 400
        assert client.get("/no/such/path").status_code == 404
        text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    counts = samples(text.text, "mlplatform_gateway_requests_total")
    ok = frozenset({"route": "/forward", "method": "POST", "model": "echo", "version": "1",
                    "code": "200"}.items())
    bad = frozenset({"route": "/forward", "method": "POST", "model": "", "version": "",
                     "code": "400"}.items())
    unmatched = frozenset({"route": "unmatched", "method": "GET", "model": "", "version": "",
                           "code": "404"}.items())
    assert counts[ok] == 1 and counts[bad] == 1 and counts[unmatched] == 1
    assert not any(("model", "nosuch") in labels for labels in counts)  # no caller-made series
    latency = samples(text.text, "mlplatform_gateway_request_duration_seconds_count")
    assert latency[frozenset({"route": "/forward", "model": "echo"}.items())] == 1


@pytest.mark.unit
def test_shared_requests_report_their_group_sizes(parts):  # noqa: F811
    settings, upstream, _, gateway = parts
    app = create_app(settings, gateway)

    async def burst():
        upstream.hold = asyncio.Event()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            calls = [asyncio.ensure_future(client.post("/forward", json={"a": n}))
                     for n in range(6)]

            def queued() -> int:
                lane = gateway.coalescer._lanes.get(("echo", "1"))
                return len(lane.pending) if lane else 0

            while not (len(upstream.calls) == 2 and queued() == 4):  # 2 in flight, 4 wait
                await asyncio.sleep(0.01)
            upstream.hold.set()
            answers = await asyncio.gather(*calls)
            return [a.status_code for a in answers], (await client.get("/metrics")).text

    with TestClient(app):  # runs the lifespan (the job worker, the follower)
        statuses, text = asyncio.run(burst())
    assert statuses == [200] * 6
    sizes = samples(text, "mlplatform_gateway_shared_request_documents_sum")
    count = samples(text, "mlplatform_gateway_shared_request_documents_count")
    key = frozenset({"model": "echo"}.items())
    # two lone calls, then the four that waited in one shared request
    assert sizes[key] == 6 and count[key] == len(upstream.calls) == 3


@pytest.mark.unit
def test_predicted_classes_and_scores_are_bounded():
    metrics = GatewayMetrics()
    metrics.observe_answer("fraud", "3", {"is_fraud": 1, "fraud_probability": 0.93})
    for n in range(MAX_CLASSES + 5):
        metrics.observe_answer("digits", "1", {"digit": f"class-{n}"})
    metrics.observe_answer("digits", "1", {"digit": "x" * 500})
    text = metrics.render().decode()
    classes = samples(text, "mlplatform_gateway_predictions_total")
    assert classes[frozenset({"model": "fraud", "version": "3", "predicted": "1"}.items())] == 1
    digits = {dict(labels)["predicted"] for labels in classes if ("model", "digits") in labels}
    assert len(digits) == MAX_CLASSES + 1 and OTHER in digits
    score_sum = samples(text, "mlplatform_gateway_prediction_score_sum")
    assert score_sum[frozenset({"model": "fraud", "version": "3"}.items())] == pytest.approx(0.93)


def test_fraud_answers_show_up_in_the_stack_gateways_metrics(served):
    for _ in range(3):
        answer = requests.post(served.gateway_url + "/forward?model=fraud",
                               json=EXAMPLE_TRANSACTION, timeout=30)
        assert answer.status_code == 200
    version = answer.headers["x-model-version"]
    text = requests.get(served.gateway_url + "/metrics", timeout=30).text
    scores = samples(text, "mlplatform_gateway_prediction_score_count")
    assert scores[frozenset({"model": "fraud", "version": version}.items())] >= 3
    counts = samples(text, "mlplatform_gateway_requests_total")
    assert counts[frozenset({"route": "/forward", "method": "POST", "model": "fraud",
                             "version": version, "code": "200"}.items())] >= 3


@pytest.mark.unit
def test_loop_histograms_bucket_like_prometheus_client():
    """The request path's lock-free histogram puts values where prometheus_client's own
    Histogram does, bounds included (le: at or below)."""
    from prometheus_client import CollectorRegistry, Histogram

    from mlplatform.gateway.loop_metrics import LoopHistogram

    bounds = (0.1, 0.5, 1.0)
    ours = LoopHistogram("h", "h", ["m"], bounds)
    theirs = Histogram("h", "h", ["m"], buckets=bounds, registry=CollectorRegistry())
    for value in (0.0, 0.1, 0.10001, 0.5, 0.7, 1.0, 3.0):
        ours.observe(("x",), value)
        theirs.labels("x").observe(value)
    expected = {s.labels["le"]: s.value for s in next(iter(theirs.collect())).samples
                if s.name == "h_bucket"}
    found = {s.labels["le"]: s.value for s in ours.family().samples if s.name == "h_bucket"}
    assert found == expected == {"0.1": 2, "0.5": 4, "1.0": 6, "+Inf": 7}
