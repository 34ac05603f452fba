"""Canary and shadow on the real stack (echo, two versions), and their pure logic."""
from __future__ import annotations

import asyncio
import time

import pytest
import requests
from mlflow.tracking import MlflowClient

from mlplatform.gateway.errors import ModelFailed
from mlplatform.gateway.splitting import Shadowing, canary_bucket, compare
from mlplatform.pyfunc_models.conventions import SHADOW, RouteRule

SERVED_TAG = "mlplatform.served.local"


# ---------------------------------------------------------------- pure logic

def test_a_canary_key_always_lands_on_the_same_side():
    keys = [f"customer-{i}" for i in range(2000)]
    assert [canary_bucket(k) for k in keys] == [canary_bucket(k) for k in keys]
    share = sum(canary_bucket(k) < 10 for k in keys) / len(keys)
    assert 0.07 < share < 0.13  # a hash spreads keys evenly: ~10 % below 10


def test_shadow_copies_go_in_batches_and_one_bad_copy_fails_alone():
    """A burst of calls: one V2 request for the copies, plus the timed single one; a
    document that makes the shadow fail is retried alone and counted alone."""
    sent = []

    async def shadow_model(documents):  # a stand-in for the shadow version on MLServer
        sent.append(list(documents))
        if any(d == "bad" for d in documents):
            raise ModelFailed("bad document")
        return [{"class": d % 2} for d in documents]

    async def burst():
        shadowing = Shadowing(max_in_flight=1000, latency_sample_interval=3600)  # 1 timed
        rule = RouteRule(SHADOW, "challenger", "2", 100.0)
        for n in range(204):
            shadowing.send("m", rule, {"class": 0}, 0.001, n, shadow_model)
        shadowing.send("m", rule, {"class": 0}, 0.001, "bad", shadow_model)  # the last
        await shadowing.drain()
        return shadowing

    shadowing = asyncio.run(burst())
    report = shadowing.stats["m"].report()
    total = 205
    singles = 1
    batched = total - singles
    # the timed singles, one shared request (it holds "bad" and fails), then its copies
    # again one by one
    assert sorted(len(batch) for batch in sent) == [1] * (singles + batched) + [batched]
    assert report["calls"] == total and report["answered"] == total - 1
    assert report["errors"] == 1
    assert report["agreement_rate"] == 0.5  # even documents agree with class 0
    assert len(shadowing.stats["m"].shadow_seconds) == singles  # only single copies timed
    assert shadowing.in_flight == 0


def test_copies_cancelled_in_flight_are_counted_out():
    """The app stopping mid-copy (its tasks cancelled) leaves nothing counted in flight,
    so a long-lived gateway never creeps up to its in-flight limit."""
    async def never_answers(documents):
        await asyncio.Event().wait()

    async def stop_mid_copy():
        shadowing = Shadowing(max_in_flight=1000, latency_sample_interval=3600)
        rule = RouteRule(SHADOW, "challenger", "2", 100.0)
        for n in range(10):
            shadowing.send("m", rule, {"class": 0}, 0.001, n, never_answers)
        for key in list(shadowing._waiting):
            shadowing._flush(key)
        await asyncio.sleep(0)
        assert shadowing.in_flight == 10
        for task in list(shadowing._tasks):
            task.cancel()
        await asyncio.gather(*shadowing._tasks, return_exceptions=True)
        return shadowing

    assert asyncio.run(stop_mid_copy()).in_flight == 0


@pytest.mark.parametrize("served, shadow, same, delta", [
    ({"is_fraud": True, "fraud_probability": 0.9}, {"is_fraud": 1, "fraud_probability": 0.7},
     True, 0.2),
    ({"is_fraud": True, "fraud_probability": 0.9}, {"is_fraud": False, "fraud_probability": 0.4},
     False, 0.5),
    ({"scenario": "legit"}, {"scenario": "stolen_card"}, False, None),
    ({"result": 20}, {"result": 20}, True, None),
    ([1, 2], [1, 3], False, None),
])
def test_answers_are_compared_by_class_and_probability(served, shadow, same, delta):
    found_same, found_delta = compare(served, shadow)
    assert found_same == same
    assert (found_delta is None) == (delta is None)
    if delta is not None:
        assert abs(found_delta - delta) < 1e-9


# ---------------------------------------------------------------- on the stack

@pytest.fixture
def two_versions(served):
    """echo's served version and a challenger beside it; the rule is removed afterwards."""
    registry = MlflowClient(served.mlflow_url)
    served_now = registry.get_registered_model("echo").tags[SERVED_TAG]
    served.cli("register", "echo", "--force", "--alias", "challenger")
    challenger = registry.get_model_version_by_alias("echo", "challenger").version
    yield served_now, challenger
    served.cli("route", "echo", "--off")


def call(served, body, key=None):
    headers = {"X-Canary-Key": key} if key else {}
    response = requests.post(served.gateway_url + "/forward", json=body, headers=headers,
                             timeout=30)
    return response.status_code, response.headers.get("x-model-version"), response.json()


def eventually(check, limit: float = 60.0):
    """Until ``check()`` is truthy: the gateway reads the rule with the model's registry
    record, refreshed within REGISTRY_TTL (a bound for a stuck gateway, not a measure)."""
    deadline = time.monotonic() + limit
    while not (found := check()):
        assert time.monotonic() < deadline, "the gateway never applied the rule"
        time.sleep(0.3)
    return found


def test_canary_takes_its_share_by_key_and_off_unloads_it(served, two_versions):
    served_now, challenger = two_versions
    output = served.cli("route", "echo", "--canary", "challenger=30").stdout
    assert f"canary challenger (version {challenger}) takes 30 %" in output
    keys = [f"k{i}" for i in range(60)]
    expected = {k: challenger if canary_bucket(k) < 30 else served_now for k in keys}
    first_canary = next(k for k in keys if expected[k] == challenger)
    eventually(lambda: call(served, {"a": 1}, first_canary)[1] == challenger)
    seen = {k: call(served, {"a": 2}, k) for k in keys}
    assert {k: version for k, (_, version, _) in seen.items()} == expected
    assert all(status == 200 and answer == {"result": 4} for status, _, answer in seen.values())
    pinned = requests.post(served.gateway_url + "/forward?model=echo@champion", json={"a": 1},
                           headers={"X-Canary-Key": first_canary}, timeout=30)
    assert pinned.headers["x-model-version"] == served_now  # NAME@ALIAS goes where it says

    assert "unloaded version(s)" in served.cli("route", "echo", "--off").stdout
    index = requests.post(served.mlserver_url + "/v2/repository/index", json={}).json()
    assert [m["version"] for m in index if m["name"] == "echo"] == [served_now]
    eventually(lambda: call(served, {"a": 1}, first_canary)[1] == served_now)


def test_shadow_answers_from_the_served_version_and_compares(served, two_versions):
    served_now, challenger = two_versions
    served.cli("route", "echo", "--shadow", "challenger")
    eventually(lambda: call(served, {"a": 1})[1] == served_now and requests.get(
        served.gateway_url + "/models/echo/shadow", timeout=30).status_code == 200)
    before = requests.get(served.gateway_url + "/models/echo/shadow", timeout=30).json()["calls"]
    answers = [call(served, {"a": n}) for n in range(40)]
    assert all(a == (200, served_now, {"result": 2 * n}) for n, a in enumerate(answers))

    def settled():
        report = requests.get(served.gateway_url + "/models/echo/shadow", timeout=30).json()
        done = report["answered"] + report["errors"] + report["dropped"]
        return report if report["calls"] >= before + 40 and done == report["calls"] else None

    report = eventually(settled)
    assert (report["version"], report["errors"], report["agreement_rate"]) == (
        challenger, 0, 1.0), report
    assert report["served_latency_ms"]["p99"] > 0 and report["shadow_latency_ms"]["p50"] > 0


def test_a_failing_shadow_never_reaches_the_caller(served, two_versions):
    """Failure injection: the shadow version is unloaded behind the gateway's back."""
    served_now, challenger = two_versions
    served.cli("route", "echo", "--shadow", "challenger")
    eventually(lambda: call(served, {"a": 1}) and requests.get(
        served.gateway_url + "/models/echo/shadow", timeout=30).status_code == 200)
    settings = served.state_dir / "mlserver" / "echo" / challenger / "model-settings.json"
    settings.unlink()
    settings.parent.rmdir()
    requests.post(served.mlserver_url + "/v2/repository/models/echo/load", timeout=60)
    answers = [call(served, {"a": n}) for n in range(20)]
    assert all(a == (200, served_now, {"result": 2 * n}) for n, a in enumerate(answers))
    report = eventually(lambda: (r := requests.get(served.gateway_url + "/models/echo/shadow",
                                                   timeout=30).json())["errors"] > 0 and r)
    assert report["errors"] > 0 and report["last_error"], report
