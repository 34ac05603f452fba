"""The launcher with a local artifact folder: up, reuse, status, down leaves nothing behind."""
from __future__ import annotations

import json
import re

import pytest

from tests.support import Stack, assert_all_gone, recorded_pids, stack_environment

pytestmark = pytest.mark.stack


def test_up_twice_reuses_the_stack_and_down_stops_everything(tmp_path):
    stack = Stack(tmp_path, stack_environment(tmp_path), s3=None)
    pids = []
    try:
        first = stack.cli("up").stdout
        assert f"artifacts in {tmp_path / 'artifacts'}" in first
        pids = recorded_pids(tmp_path)
        state = json.loads((tmp_path / "state.json").read_text())["components"]

        second = stack.cli("up").stdout
        assert "MLflow tracking server already running" in second
        assert "MLServer already running" in second
        assert json.loads((tmp_path / "state.json").read_text())["components"] == state

        status = stack.cli("status").stdout
        assert re.search(r"mlflow\s+healthy", status) and re.search(r"mlserver\s+healthy", status)

        stack.cli("register", "echo")
        deployed = stack.cli("deploy").stdout
        assert "echo/1: serving" in deployed
        assert list((tmp_path / "artifacts").rglob("MLmodel"))
    finally:
        stack.cli("down", check=False)
    assert_all_gone(pids)
    after = stack.cli("status", check=False)
    assert after.returncode == 1 and "stopped" in after.stdout
    assert "nothing is running" in stack.cli("down").stdout
