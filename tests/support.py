"""What the tests share besides fixtures: the stack handle, environments, process helpers.

Imported as ``tests.support``; ``conftest.py`` holds only the fixtures.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import psutil
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
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MLPLATFORM_PROMETHEUS_PORT']}"

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


def stack_environment(state_dir: Path, s3: S3Server = None) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLPLATFORM_", "MLFLOW_", "AWS_"))}
    env["MLPLATFORM_GATEWAY_TIMEOUT"] = "20"
    env["MLPLATFORM_GATEWAY_JOB_LEASE"] = "3"  # a dead gateway's job is taken over in ~3 s
    # The stack's gateway does not follow alias moves: tests that register or move an alias
    # and then deploy see exactly what they did (following is tested on a gateway of its own).
    env["MLPLATFORM_GATEWAY_ALIAS_POLL"] = "0"
    env["MLPLATFORM_GATEWAY_MAX_BODY_BYTES"] = str(GATEWAY_BODY_LIMIT)
    env.update({
        "MLPLATFORM_STATE_DIR": str(state_dir),
        "MLPLATFORM_MLFLOW_PORT": str(free_port()),
        "MLPLATFORM_MLSERVER_HTTP_PORT": str(free_port()),
        "MLPLATFORM_MLSERVER_GRPC_PORT": str(free_port()),
        "MLPLATFORM_MLSERVER_METRICS_PORT": str(free_port()),
        "MLPLATFORM_GATEWAY_PORT": str(free_port()),
        "MLPLATFORM_PROMETHEUS_PORT": str(free_port()),
        "MLPLATFORM_PROMETHEUS_SCRAPE_INTERVAL": "1s",  # tests read series seconds after traffic
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


def start_gateway(tmp_path, mlserver_url: str, timeout: float = 2.0, s3: S3Server = None,
                  **settings: str):
    """A gateway process of its own, with its own job database and files under
    ``tmp_path``; ``settings`` are extra MLPLATFORM_GATEWAY_* values (lower case)."""
    port = free_port()
    env = {**stack_environment(tmp_path, s3), "MLPLATFORM_GATEWAY_MLSERVER_URL": mlserver_url,
           "MLPLATFORM_GATEWAY_TIMEOUT": str(timeout),
           "MLPLATFORM_GATEWAY_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
           **{f"MLPLATFORM_GATEWAY_{key.upper()}": value for key, value in settings.items()}}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "mlplatform.gateway.app:app", "--port",
                                str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health", timeout=60, require_ok=True)
    return process, url


class Postgres:
    """A throw-away PostgreSQL server (Debian's initdb + pg_ctl) on a free port, in a
    temporary folder; run as the ``postgres`` user when the suite runs as root
    (initdb refuses root)."""

    def __init__(self):
        import glob
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("no PostgreSQL server binaries: `make test` installs them "
                               "(scripts/ensure_package.sh)")
        self.bin = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="mlplatform-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            import shutil

            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://mlplatform@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> "Postgres":
        data = self.folder / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "mlplatform", "--auth=trust",
                  "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "log"),
                  "-w", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                  "start")
        return self

    def stop(self) -> None:
        import shutil

        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast",
                      "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class Traffic:
    """Calls (``/forward`` of echo by default) in a loop on a thread until stopped: every
    status and model version seen.  A call that raises (connection reset, timeout) is a
    failure too: recorded as status 0 with the exception's name, so a test asserting
    ``{200}`` sees it.  Fewer than ``min_calls`` calls, or an error in the loop itself,
    fail the ``with`` block; every wait has a deadline."""

    def __init__(self, url: str, limit_seconds: float = 300.0, path: str = "/forward",
                 body: Any = None, min_calls: int = 3):
        self.url, self.limit = url + path, limit_seconds
        self.body = {"a": 10} if body is None else body
        self.min_calls = min_calls
        self.seen: List[Tuple[int, str]] = []
        self.crashed: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit  # bounded even if stop() is never called
        try:
            with requests.Session() as session:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    try:
                        response = session.post(self.url, json=self.body, timeout=30)
                    except requests.RequestException as exc:  # a failed call, counted
                        self.seen.append((0, type(exc).__name__))
                        continue
                    self.seen.append((response.status_code,
                                      response.headers.get("x-model-version")))
        except BaseException as exc:  # the loop itself broke: __exit__ raises it
            self.crashed = exc

    def __enter__(self) -> "Traffic":
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.seen:  # at least one answer before the action under test
            if self.crashed is not None or not self._thread.is_alive():
                raise AssertionError(f"the traffic loop stopped before any call: {self.crashed!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no call to {self.url} finished within 60 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if exc_info[0] is not None:
            return  # the test's own failure comes first
        if self._thread.is_alive():
            raise AssertionError(f"the traffic loop to {self.url} did not stop within 60 s")
        if self.crashed is not None:
            raise AssertionError(f"the traffic loop failed: {self.crashed!r}") from self.crashed
        if len(self.seen) < self.min_calls:
            raise AssertionError(f"only {len(self.seen)} call(s) to {self.url} during the "
                                 f"action; at least {self.min_calls} expected")
