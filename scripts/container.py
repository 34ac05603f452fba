"""``mlplatform container ROLE``: what each service of the platform image runs.

One image (``infra/docker/Dockerfile``) serves every role; the role is the container's
command (``docker run mlplatform/platform gateway``).  Everything a role needs comes from
its environment -- the same ``MLPLATFORM_*``, ``MLFLOW_*`` and ``AWS_*`` variables as the
process stack -- so ``docker-compose.yml``, a Kubernetes Deployment and ``docker run -e``
configure it alike.  No model is in the image: MLServer's role resolves
``models:/NAME@ALIAS`` through MLflow at start and MLServer pulls the artifacts from S3.

Each role writes the address of its own health check to ``HEALTH_FILE`` before it
starts listening; the image's ``HEALTHCHECK`` (``mlplatform container health``) asks it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from .settings import load_settings

HEALTH_FILE = Path(tempfile.gettempdir()) / "mlplatform-health-url"
MLFLOW_PORT = 5000
HTTP_PORT = 8080       # MLServer's V2 REST in its container; the gateway's in its own
GRPC_PORT = 8081
METRICS_PORT = 8082
REPOSITORY = Path(os.environ.get("MLPLATFORM_MLSERVER_REPOSITORY", "/srv/models"))


class RoleError(RuntimeError):
    """The role cannot start; the message says which variable to set."""


def _announce_health(url: str) -> None:
    HEALTH_FILE.write_text(url)


def health() -> int:
    """0 when the role's health check answers 200 (Docker's HEALTHCHECK contract).  Plain
    urllib on purpose: Docker runs this every 5 s, so it imports nothing of the platform."""
    try:
        url = HEALTH_FILE.read_text().strip()
        with urllib.request.urlopen(url, timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except (OSError, ValueError):
        return 1


def _exec(command: List[str], env: Optional[Dict[str, str]] = None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], command, {**os.environ, **(env or {})})


# ---------------------------------------------------------------- mlflow


def mlflow() -> None:
    """The tracking server: backend store from MLPLATFORM_MLFLOW_BACKEND_STORE_URI (handed
    to MLflow in its environment, never on its command line; a PostgreSQL password comes
    from PGPASSWORD), artifacts proxied to the S3 bucket (created when missing, as
    ``mlplatform up`` does).  With MLFLOW_AUTH_ADMIN_PASSWORD set, MLflow's basic-auth app
    is on and the platform's accounts are made first (scripts/mlflow_server.py)."""
    from .s3 import ensure_bucket

    settings = load_settings()
    if not settings.uses_s3:
        raise RoleError("the mlflow role stores artifacts in S3: set MLFLOW_S3_ENDPOINT_URL, "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    ensure_bucket(str(settings.s3_endpoint_url), settings.s3_bucket, *settings.s3_keys())
    backend = os.environ.get("MLPLATFORM_MLFLOW_BACKEND_STORE_URI",
                             f"sqlite:///{settings.state_path / 'mlflow.db'}")
    _announce_health(f"http://127.0.0.1:{MLFLOW_PORT}/health")
    authentication = (["--app-name", "basic-auth"]
                      if os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") else [])
    _exec([sys.executable, "-m", "mlplatform.scripts.mlflow_server", *authentication,
           "--serve-artifacts", "--artifacts-destination", settings.artifacts_destination,
           "--host", "0.0.0.0", "--port", str(MLFLOW_PORT),
           "--workers", str(settings.mlflow_workers)],
          env={**settings.s3_environment(), "MLFLOW_BACKEND_STORE_URI": backend,
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": str(settings.mlflow_jobs).lower()})


# ---------------------------------------------------------------- mlserver


def served_at_start() -> List[str]:
    """MLPLATFORM_SERVE: what a fresh repository serves, e.g. ``fraud@champion echo``."""
    return os.environ.get("MLPLATFORM_SERVE", "").replace(",", " ").split()


def mlserver() -> int:
    """``mlserver start`` on the repository volume shared with the gateway, then what was
    served before (the folder survives restarts) and what MLPLATFORM_SERVE names."""
    from mlplatform.mlserver_configs.generator import ServerOptions, write_server_settings

    settings = load_settings()
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking:
        raise RoleError("the mlserver role resolves models:/ URIs through MLflow: set "
                        "MLFLOW_TRACKING_URI (e.g. http://mlflow:5000)")
    write_server_settings(REPOSITORY, ServerOptions(
        host="0.0.0.0", http_port=HTTP_PORT, grpc_port=GRPC_PORT, metrics_port=METRICS_PORT,
        parallel_workers=settings.parallel_workers, load_models_at_startup=False))
    server = subprocess.Popen(["mlserver", "start", str(REPOSITORY)],
                              env={**os.environ, **settings.s3_environment()})
    _forward_signals(server)
    url = f"http://127.0.0.1:{HTTP_PORT}"
    if _wait_live(url, server, settings.startup_timeout):
        try:
            _serve_at_start(url, tracking)
        except Exception as exc:  # MLflow unreachable, S3 refusing...: MLServer stays up
            print(f"mlplatform: serving at start failed, nothing restored: {exc}",
                  file=sys.stderr)
        _announce_health(f"{url}/v2/health/ready")
    return server.wait()


def _forward_signals(child: subprocess.Popen) -> None:
    def forward(signum, _frame):
        child.send_signal(signum)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)


def _wait_live(url: str, server: subprocess.Popen, timeout: float) -> bool:
    from .stack import http_ok

    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        if http_ok(url + "/v2/health/live"):
            return True
        time.sleep(0.5)
    return False


def _serve_at_start(url: str, tracking: str) -> None:
    from mlflow.tracking import MlflowClient

    from mlplatform.mlserver_configs.generator import ConfigError
    from mlplatform.mlserver_configs.serving import Serving, ServingTarget
    from mlplatform.pyfunc_models.conventions import CHAMPION, DEFAULT_TARGET, ModelReference

    target = ServingTarget(url, REPOSITORY, os.environ.get("MLPLATFORM_GATEWAY_TARGET",
                                                           DEFAULT_TARGET))
    serving = Serving(MlflowClient(tracking_uri=tracking), target)
    outcomes = serving.restore()
    restored = {outcome.name for outcome in outcomes}
    for text in served_at_start():
        reference = ModelReference.parse(text, CHAMPION)
        if reference.name in restored:
            continue
        try:
            outcomes.append(serving.deploy(reference))
        except (ConfigError, OSError) as exc:  # not registered yet: the gateway follows later
            print(f"mlplatform: {text}: not served at start: {exc}", file=sys.stderr)
    for outcome in outcomes:
        print(f"mlplatform: {outcome.describe()}", file=sys.stderr)


# ---------------------------------------------------------------- gateway


def gateway() -> None:
    """The REST gateway and web page; MLPLATFORM_GATEWAY_* name MLServer and MLflow."""
    for name in ("MLPLATFORM_GATEWAY_MLSERVER_URL", "MLPLATFORM_GATEWAY_TRACKING_URI"):
        if not os.environ.get(name):
            raise RoleError(f"the gateway role needs {name} (e.g. http://mlserver:8080, "
                            "http://mlflow:5000)")
    settings = load_settings()
    _announce_health(f"http://127.0.0.1:{HTTP_PORT}/health")
    command = [sys.executable, "-m", "uvicorn", "mlplatform.gateway.app:app",
               "--host", "0.0.0.0", "--port", str(HTTP_PORT), "--no-server-header"]
    if not settings.gateway_access_log:
        command.append("--no-access-log")
    _exec(command, env={"MLPLATFORM_GATEWAY_MLSERVER_REPOSITORY": str(REPOSITORY),
                        **settings.s3_environment()})


# ---------------------------------------------------------------- jupyterhub

HUB_PORT = 6000


def jupyterhub() -> None:
    """The hub of infra/jupyterhub (image infra/docker/jupyterhub.Dockerfile): the shared
    password from MLPLATFORM_JUPYTERHUB_PASSWORD, the users from MLPLATFORM_JUPYTERHUB_USERS
    (required), notebooks given the platform's addresses (MLFLOW_TRACKING_URI,
    MLPLATFORM_MLSERVER_URL, MLPLATFORM_GATEWAY_URL; no S3 keys)."""
    from .jupyterhub import NO_PASSWORD, HubSetupError, check_users

    if not os.environ.get("MLPLATFORM_JUPYTERHUB_PASSWORD"):
        raise RoleError(NO_PASSWORD)
    try:
        check_users(os.environ.get("MLPLATFORM_JUPYTERHUB_USERS", ""))
    except HubSetupError as exc:
        raise RoleError(str(exc)) from None
    config = os.environ.get("MLPLATFORM_JUPYTERHUB_CONFIG", "")
    if not Path(config).is_file():
        raise RoleError("the jupyterhub role runs the image built from "
                        "infra/docker/jupyterhub.Dockerfile (MLPLATFORM_JUPYTERHUB_CONFIG)")
    settings = load_settings()
    defaults = {"MLPLATFORM_JUPYTERHUB_IP": "0.0.0.0",
                "MLPLATFORM_JUPYTERHUB_PORT": str(HUB_PORT),
                "MLPLATFORM_JUPYTERHUB_STATE": str(settings.state_path / "jupyterhub"),
                "MLPLATFORM_STATE_DIR": str(settings.state_path)}
    port = os.environ.get("MLPLATFORM_JUPYTERHUB_PORT", str(HUB_PORT))
    _announce_health(f"http://127.0.0.1:{port}/hub/health")
    _exec(["jupyterhub", "-f", config],
          env={**defaults, **{k: v for k, v in os.environ.items() if k in defaults}})


ROLES = {"mlflow": mlflow, "mlserver": mlserver, "gateway": gateway, "jupyterhub": jupyterhub}


def run(role: str, arguments: List[str]) -> int:
    """Run ROLE; any other word is a command run as it is (``docker run IMAGE mlplatform
    register echo``)."""
    if role == "health":
        return health()
    if role not in ROLES:
        try:
            _exec([role, *arguments])
        except FileNotFoundError:
            raise RoleError(f"{role!r} is neither a role ({', '.join(ROLES)}, health) nor a "
                            "command in the image") from None
    return ROLES[role]() or 0
