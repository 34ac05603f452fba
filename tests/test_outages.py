"""Outages on a stack of its own: MLflow down, MLServer frozen.

* MLflow down: a model the gateway has served keeps answering from what it has
  cached; ``/models`` answers from the cache and flags it stale; a model whose
  wire format was never read answers 503, not a misleading 400.
* MLServer frozen (SIGSTOP): ``/ready`` answers 503 on its own short timeout
  instead of hanging for the whole inference timeout.
"""
from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
import requests

from tests.support import Stack, assert_all_gone, recorded_pids, stack_environment

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def lone_stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("outages")
    env = stack_environment(state)
    env["MLPLATFORM_GATEWAY_REGISTRY_TTL"] = "0"  # every call looks the registry up again
    stack = Stack(state, env, s3=None)
    pids = []
    try:
        stack.cli("up")
        pids = recorded_pids(state)
        stack.cli("register", "echo", "digits")
        stack.cli("deploy")
        yield stack
    finally:
        stack.cli("down", check=False)
        assert_all_gone(pids)


def _pid(stack, component: str) -> int:
    return json.loads((stack.state_dir / "state.json").read_text())["components"][component]["pid"]


def test_mlflow_down_served_models_keep_answering(lone_stack):
    gateway = lone_stack.gateway_url
    assert requests.post(gateway + "/forward", json={"a": 2}, timeout=30).json() == {"result": 4}
    mlflow = psutil.Process(_pid(lone_stack, "mlflow"))
    mlflow.suspend()  # the registry stops answering (as a hung server would)
    try:
        for n in range(20):
            answer = requests.post(gateway + "/forward", json={"a": n}, timeout=30)
            assert answer.status_code == 200 and answer.json() == {"result": 2 * n}
        models = requests.get(gateway + "/models", timeout=30).json()
        echo = next(m for m in models if m["name"] == "echo")
        assert echo["version"] == "1" and echo["stale"] is True
        image = requests.post(gateway + "/forward?model=digits", files={"image": b"x"},
                              timeout=30)
        assert image.status_code == 503, image.text  # its format was never read: cannot tell
        assert "registry cannot be read" in image.json()["detail"]
    finally:
        mlflow.resume()


def test_a_frozen_model_server_makes_ready_answer_503_quickly(lone_stack):
    mlserver = _pid(lone_stack, "mlserver")
    os.kill(mlserver, signal.SIGSTOP)
    try:
        ready = requests.get(lone_stack.gateway_url + "/ready", timeout=15)  # not 30 s
        assert ready.status_code == 503 and ready.json()["model_server"] is False
    finally:
        os.kill(mlserver, signal.SIGCONT)
    after = requests.get(lone_stack.gateway_url + "/ready", timeout=15).json()
    assert after["model_server"] is True and after["models"]["echo"] is True
