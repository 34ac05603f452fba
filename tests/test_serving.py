"""What is served changes only through deploy, and never drops a request.

On the real stack: registering, moving an alias or a failing deploy leave the
served version answering; ``deploy`` switches once the new version is ready and
retires the old one.  Traffic runs through the gateway the whole time.
"""
from __future__ import annotations

import re
import time
from typing import List, Tuple

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.support import Traffic, start_gateway, stop

pytestmark = pytest.mark.stack

SERVED_TAG = "mlplatform.served.local"


def _answer(stack) -> Tuple[int, str, dict]:
    response = requests.post(stack.gateway_url + "/forward", json={"a": 10}, timeout=30)
    return response.status_code, response.headers.get("x-model-version"), response.json()


def _loads_of(stack, name: str) -> List[str]:
    log = (stack.state_dir / "logs" / "mlserver.log").read_text(errors="replace")
    return re.findall(rf"Loading (models:/{name}/\d+) in a worker thread", log)


@pytest.fixture
def registry(served):
    return MlflowClient(tracking_uri=served.mlflow_url)


def test_register_then_deploy_switches_without_a_failed_request(served, registry):
    """The foundations issue's scenario: a new champion changes nothing until deploy."""
    before = registry.get_registered_model("echo").tags[SERVED_TAG]
    with Traffic(served.gateway_url) as during_register:
        output = served.cli("register", "echo", "--force", "--alias", "champion").stdout
    new = registry.get_model_version_by_alias("echo", "champion").version
    assert new != before and f"models:/echo/{new}" in output
    assert {status for status, _ in during_register.seen} == {200}
    assert {version for _, version in during_register.seen} == {before}
    assert _answer(served)[:2] == (200, before)  # the alias moved; serving did not

    loads_before = _loads_of(served, "echo")
    with Traffic(served.gateway_url) as during_deploy:
        output = served.cli("deploy", "--model", "echo").stdout
    # The new version loaded once; the served one was not loaded again when MLServer
    # re-read the folder (runtime.py shares a pinned version already in memory).
    loads = _loads_of(served, "echo")[len(loads_before):]
    assert loads == [f"models:/echo/{new}"], loads
    assert f"echo/{new}: serving (was version {before})" in output
    assert {status for status, _ in during_deploy.seen} == {200}, during_deploy.seen
    assert {version for _, version in during_deploy.seen} <= {before, new}
    assert _answer(served) == (200, new, {"result": 20})  # the very next call: the new one
    assert registry.get_registered_model("echo").tags[SERVED_TAG] == new
    index = requests.post(served.mlserver_url + "/v2/repository/index", json={}).json()
    assert [m["version"] for m in index if m["name"] == "echo"] == [new]  # old one retired


def test_register_with_a_champion_sets_challenger(served, registry):
    champion = registry.get_model_version_by_alias("echo", "champion").version
    output = served.cli("register", "echo", "--force").stdout
    challenger = registry.get_model_version_by_alias("echo", "challenger").version
    assert f"models:/echo@challenger -> models:/echo/{challenger}" in output
    assert registry.get_model_version_by_alias("echo", "champion").version == champion
    assert _answer(served)[:2] == (200, registry.get_registered_model("echo").tags[SERVED_TAG])
    # The challenger is reachable by name only once it is deployed; the gateway says so.
    response = requests.post(served.gateway_url + "/forward?model=echo@challenger",
                             json={"a": 1}, timeout=30)
    assert response.status_code == 503
    assert f"echo@challenger is version {challenger}, which is not served" in response.json()[
        "detail"]


def test_with_following_off_moving_the_alias_changes_nothing_served(served, registry):
    """The stack's gateway runs with ALIAS_POLL=0 (tests/support.py)."""
    served_now = registry.get_registered_model("echo").tags[SERVED_TAG]
    versions = [v.version for v in registry.search_model_versions("name='echo'")]
    other = next(v for v in versions if v != served_now)
    registry.set_registered_model_alias("echo", "champion", other)  # as the MLflow UI does
    try:
        assert _answer(served)[:2] == (200, served_now)
    finally:
        registry.set_registered_model_alias("echo", "champion", served_now)


def test_champion_moved_in_the_registry_is_served_within_the_poll_interval(served, registry,
                                                                           tmp_path):
    """A gateway following the champion alias (ALIAS_POLL=1): moved with MlflowClient, as
    the MLflow UI does, the new version is served with no failed request, and back."""
    served_now = registry.get_registered_model("echo").tags[SERVED_TAG]
    other = next(v.version for v in registry.search_model_versions("name='echo'")
                 if v.version != served_now)
    process, _ = start_gateway(tmp_path, served.mlserver_url, timeout=20, s3=served.s3,
                               tracking_uri=served.mlflow_url, alias_poll="1",
                               mlserver_repository=str(served.state_dir / "mlserver"))
    try:
        for target in (other, served_now):
            with Traffic(served.gateway_url) as during:
                registry.set_registered_model_alias("echo", "champion", target)
                wait_until_served(served, registry, "echo", target)
            assert {status for status, _ in during.seen} == {200}, during.seen
            assert _answer(served)[:2] == (200, target)
    finally:
        stop(process)
        registry.set_registered_model_alias("echo", "champion", served_now)


def wait_until_served(stack, registry, name: str, version: str, limit: float = 120.0) -> None:
    """Until the follower's deploy is whole: ``version`` recorded as served *and* the
    old one retired (the record is written before the retire; a call in between may
    still be answered by the old version)."""
    deadline = time.monotonic() + limit  # a bound for a hung follower, not a measurement

    def loaded() -> List[str]:
        index = requests.post(stack.mlserver_url + "/v2/repository/index", json={}).json()
        return [m["version"] for m in index if m["name"] == name]

    while (registry.get_registered_model(name).tags.get(SERVED_TAG) != version
           or loaded() != [version]):
        assert time.monotonic() < deadline, f"{name} version {version} never served"
        time.sleep(0.5)


def test_a_version_that_fails_to_load_leaves_the_served_one(served, registry):
    """Failure injection: a version whose artifacts do not exist."""
    served_now = registry.get_registered_model("echo").tags[SERVED_TAG]
    broken = registry.create_model_version(
        "echo", f"s3://{served.s3.bucket}/no-such-model", run_id=None).version
    try:
        with Traffic(served.gateway_url) as during:
            result = served.cli("deploy", "--model", f"echo/{broken}", check=False)
        assert result.returncode == 1
        assert f"echo/{broken}: not deployed, {served_now} still served" in result.stdout
        assert {status for status, _ in during.seen} == {200}
        assert {version for _, version in during.seen} == {served_now}
        assert registry.get_registered_model("echo").tags[SERVED_TAG] == served_now
        assert not (served.state_dir / "mlserver" / "echo" / broken).exists()
        champion = registry.get_model_version_by_alias("echo", "champion").version
        promoted = served.cli("deploy", "--model", f"echo/{broken}", "--promote", check=False)
        assert promoted.returncode == 1 and "not deployed" in promoted.stdout
        assert registry.get_model_version_by_alias("echo", "champion").version == champion
        assert registry.get_registered_model("echo").tags[SERVED_TAG] == served_now
    finally:
        registry.delete_model_version("echo", broken)


def test_deploy_to_any_mlserver_needs_its_repository(served):
    result = served.cli("deploy", "--mlserver-url", served.mlserver_url, check=False)
    assert result.returncode == 1
    assert "--mlserver-url and --repository go together" in result.stderr
