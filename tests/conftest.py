"""Fixtures that run the real components on free ports.

* ``s3_server``: a real ``minio`` when the binary is on PATH; otherwise moto's
  standalone S3 server (``moto_server``), a *test stand-in* that speaks the S3
  API on a real port, so the same boto3 and MLflow code paths run.
* ``stack``: the real ``mlplatform up`` (MLflow tracking server with S3
  artifacts + ``mlserver start``), stopped with ``mlplatform down`` at the end.
* ``served``: the stack with echo and fraud registered and deployed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import psutil
import pytest
import requests

from mlplatform.scripts.processes import free_port

BIN = Path(sys.executable).parent
MLPLATFORM = str(BIN / "mlplatform")
GATEWAY_BODY_LIMIT = 8_000_000  # small, so the 413 test sends little
SERVED_MODELS = ("echo", "fraud", "fraud_sklearn", "fraud_scenario", "image_quantize", "digits")
S3_KEY, S3_SECRET = "mlplatform-test-key", "mlplatform-test-secret"


@dataclass
class S3Server:
    endpoint: str
    kind: str  # "minio" or "moto_server (test stand-in)"
    bucket: str = "mlplatform-test"


@dataclass
class Stack:
    """A running stack and the environment its CLI calls need."""

    state_dir: Path
    env: Dict[str, str]
    s3: S3Server
    pids: List[int] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True, timeout: float = 600,
            env: Dict[str, str] = None) -> subprocess.CompletedProcess:
        result = subprocess.run([MLPLATFORM, *args], env=env or self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"mlplatform {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MLPLATFORM_MLFLOW_PORT']}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MLPLATFORM_GATEWAY_PORT']}"

    @property
    def mlserver_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MLPLATFORM_MLSERVER_HTTP_PORT']}"


def neomaril_async_folder(folder: Path, app_source: str, model_file: str, content: str) -> Path:
    """A Neomaril Async folder (seed 002): ``score(data_path, model_path)`` plus one file."""
    import textwrap

    (folder / "app.py").write_text(textwrap.dedent(app_source))
    (folder / model_file).write_text(content)
    (folder / "neomaril.yml").write_text(f"name: {folder.name}\nsource: app.py\n"
                                         f"entrypoint: score\noperation: Async\n"
                                         f"model_file: {model_file}\n")
    return folder


def wait_for_http(url: str, timeout: float = 60, require_ok: bool = False) -> None:
    """Wait until ``url`` answers at all (or with 200, if ``require_ok``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200 or not require_ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    minio = shutil.which("minio")
    if minio:
        data = tmp_path_factory.mktemp("minio-data")
        env = {**os.environ, "MINIO_ROOT_USER": S3_KEY, "MINIO_ROOT_PASSWORD": S3_SECRET}
        command = [minio, "server", str(data), "--address", f"127.0.0.1:{port}",
                   "--console-address", f"127.0.0.1:{free_port()}"]
        kind = "minio"
    else:
        env = dict(os.environ)
        command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        kind = "moto_server (test stand-in)"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_http(endpoint)
        yield S3Server(endpoint, kind)
    finally:
        stop(process)


def stack_environment(state_dir: Path, s3: S3Server = None) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLPLATFORM_", "MLFLOW_", "AWS_"))}
    env["MLPLATFORM_GATEWAY_TIMEOUT"] = "20"
    env["MLPLATFORM_GATEWAY_MAX_BODY_BYTES"] = str(GATEWAY_BODY_LIMIT)
    env.update({
        "MLPLATFORM_STATE_DIR": str(state_dir),
        "MLPLATFORM_MLFLOW_PORT": str(free_port()),
        "MLPLATFORM_MLSERVER_HTTP_PORT": str(free_port()),
        "MLPLATFORM_MLSERVER_GRPC_PORT": str(free_port()),
        "MLPLATFORM_MLSERVER_METRICS_PORT": str(free_port()),
        "MLPLATFORM_GATEWAY_PORT": str(free_port()),
    })
    if s3 is not None:
        env.update({
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
            "MLPLATFORM_S3_BUCKET": s3.bucket,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        })
    return env


def recorded_pids(state_dir: Path) -> List[int]:
    import json

    state = json.loads((state_dir / "state.json").read_text())
    pids = []
    for component in state["components"].values():
        pids.append(component["pid"])
        try:
            pids.extend(child.pid for child in psutil.Process(component["pid"]).children(True))
        except psutil.Error:
            pass
    return pids


def assert_all_gone(pids: List[int]) -> None:
    alive = [pid for pid in pids
             if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes still running after down: {alive}"


@pytest.fixture(scope="session")
def stack(s3_server, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("stack")
    running = Stack(state_dir, stack_environment(state_dir, s3_server), s3_server)
    try:
        running.cli("up")
        running.pids = recorded_pids(state_dir)
        yield running
    finally:
        running.cli("down", check=False)
        if running.pids:
            assert_all_gone(running.pids)


@pytest.fixture(scope="session")
def served(stack):
    """The catalog's models registered (champion) and loaded into MLServer."""
    for model in SERVED_MODELS:
        stack.cli("register", model)
    stack.cli("deploy")
    return stack
