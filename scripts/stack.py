"""The local stack: MinIO (optional), the MLflow tracking server and MLServer.

``up`` starts what is not already healthy and records every process in
``<state_dir>/state.json``; ``down`` stops exactly the recorded processes;
``status`` asks each one for its health.  What MLServer serves is not decided
here: ``mlserver_configs.serving`` deploys onto the target this module describes
(``local_target``), and ``up`` only restores what was served before a restart.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import requests

from mlplatform.mlserver_configs.generator import ServerOptions, write_server_settings
from mlplatform.mlserver_configs.serving import ServingTarget

from . import jupyterhub, prometheus
from .processes import ManagedProcess, StartupError, port_is_free, spawn, wait_until
from .s3 import ensure_bucket
from .settings import PlatformSettings

STATE_FILE = "state.json"
LABELS = {"minio": "MinIO", "mlflow": "MLflow tracking server", "mlserver": "MLServer",
          "gateway": "gateway", "jupyterhub": "JupyterHub", "prometheus": "Prometheus"}
HEALTH_PATHS = {"minio": "/minio/health/live", "mlflow": "/health", "mlserver": "/v2/health/live",
                "gateway": "/health", "jupyterhub": jupyterhub.HEALTH_PATH,
                "prometheus": prometheus.HEALTH_PATH}
STOP_ORDER = ("prometheus", "jupyterhub", "gateway", "mlserver", "mlflow", "minio")
COMPONENTS = ("minio", "mlflow", "mlserver", "gateway", "jupyterhub", "prometheus")
OPTIONAL = ("minio", "jupyterhub", "prometheus")  # shown by `status` only when started

Report = Callable[[str], None]


class StackError(RuntimeError):
    """The stack cannot do what was asked; the message says what to change."""


class StackState:
    """The processes this state folder started, persisted as JSON."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / STATE_FILE
        self.components: Dict[str, ManagedProcess] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
            except ValueError as exc:
                raise StackError(f"{self.path} is not valid JSON ({exc}); remove it") from exc
            for name, data in raw.get("components", {}).items():
                self.components[name] = ManagedProcess(**data)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"components": {n: p.to_dict() for n, p in self.components.items()}}
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        partial.replace(self.path)

    def healthy(self, name: str) -> bool:
        process = self.components.get(name)
        return process is not None and process.is_running() and http_ok(
            process.url + HEALTH_PATHS[name])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def executable(name: str) -> str:
    """A console script installed next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise StackError(f"{name!r} is not installed; run `make demo` or pip install mlplatform")
    return found


def require_free_ports(host: str, ports: Dict[str, int], component: str) -> None:
    for role, port in ports.items():
        if not port_is_free(host, port):
            raise StackError(
                f"port {port} ({LABELS[component]}, {role}) is already in use; stop what holds it "
                f"or choose another port (mlplatform up --help)"
            )


def tracking_uri(settings: PlatformSettings, explicit: Optional[str] = None) -> str:
    """The flag, else the running stack's MLflow, else the configured port."""
    if explicit:
        return explicit
    process = StackState(settings.state_path).components.get("mlflow")
    return process.url if process else settings.url(settings.mlflow_port)


def mlserver_url(settings: PlatformSettings) -> str:
    process = StackState(settings.state_path).components.get("mlserver")
    return process.url if process else settings.url(settings.mlserver_http_port)


def gateway_url(settings: PlatformSettings) -> str:
    process = StackState(settings.state_path).components.get("gateway")
    return process.url if process else settings.url(settings.gateway_port)


# ---------------------------------------------------------------- up / down


def up(settings: PlatformSettings, report: Report = print,
       with_jupyterhub: bool = False, with_monitoring: bool = False) -> StackState:
    """Start MLflow, MLServer and the gateway (and JupyterHub, Prometheus if asked) unless
    healthy ones are running already."""
    state = StackState(settings.state_path)
    started: List[str] = []
    if with_jupyterhub:  # refuse before starting anything: no password, no proxy
        try:
            jupyterhub.command()
            jupyterhub.proxy_executable()
            if settings.jupyterhub_password is None:
                raise jupyterhub.HubSetupError(jupyterhub.NO_PASSWORD)
            jupyterhub.check_users(settings.jupyterhub_users)
        except jupyterhub.HubSetupError as exc:
            raise StackError(str(exc)) from None
    if with_monitoring:
        try:
            prometheus.executable()
        except prometheus.PrometheusSetupError as exc:
            raise StackError(str(exc)) from None
    try:
        if _reuse(state, "mlflow", report):
            pass
        else:
            _start_mlflow(settings, state, report)
            started.append("mlflow")
        if not _reuse(state, "mlserver", report):
            _start_mlserver(settings, state, report)
            started.append("mlserver")
        if not _reuse(state, "gateway", report):
            _start_gateway(settings, state, report)
            started.append("gateway")
        if with_jupyterhub and not _reuse(state, "jupyterhub", report):
            _start_jupyterhub(settings, state, report)
            started.append("jupyterhub")
        if with_monitoring and not _reuse(state, "prometheus", report):
            _start_prometheus(settings, state, report)
            started.append("prometheus")
    except BaseException:
        for name in reversed(started):
            state.components.pop(name).stop()
        state.save()
        raise
    if "mlserver" in started:  # a new MLServer: load what was served before
        from mlflow.tracking import MlflowClient

        from mlplatform.mlserver_configs.serving import Serving

        registry = MlflowClient(tracking_uri=state.components["mlflow"].url)
        for outcome in Serving(registry, local_target(settings)).restore():
            report(outcome.describe())
    return state


def local_target(settings: PlatformSettings) -> ServingTarget:
    """The running stack's MLServer as a serving target."""
    server = StackState(settings.state_path).components.get("mlserver")
    if server is None or not server.is_running():
        raise StackError("MLServer is not running; start the stack with `mlplatform up` "
                         "(or name a server with --mlserver-url and --repository)")
    return ServingTarget(server.url, Path(server.info["config_dir"]))


def _reuse(state: StackState, name: str, report: Report) -> bool:
    process = state.components.get(name)
    if process is None:
        return False
    if state.healthy(name):
        report(f"{LABELS[name]} already running at {process.url} (pid {process.pid})")
        return True
    process.stop()  # recorded but not healthy: replace it
    del state.components[name]
    state.save()
    return False


def _launch(state: StackState, settings: PlatformSettings, name: str, command: List[str], *,
            env: Dict[str, str], url: str, ports: Dict[str, int],
            info: Optional[Dict[str, str]] = None, what: str = "healthy") -> ManagedProcess:
    """Start a component, record it at once (so `down` finds it even if it never gets
    healthy), then wait for its health check."""
    process = spawn(name, command, log=settings.state_path / "logs" / f"{name}.log", env=env,
                    cwd=settings.state_path, url=url, ports=ports, info=info)
    state.components[name] = process
    state.save()
    wait_until(lambda: http_ok(url + HEALTH_PATHS[name]), process,
               timeout=settings.startup_timeout, what=what)
    return process


def _start_mlflow(settings: PlatformSettings, state: StackState, report: Report) -> None:
    require_free_ports(settings.host, {"HTTP": settings.mlflow_port}, "mlflow")
    if settings.uses_s3:
        ensure_bucket(str(settings.s3_endpoint_url), settings.s3_bucket, *settings.s3_keys())
    folder = settings.state_path
    folder.mkdir(parents=True, exist_ok=True)
    destination = settings.artifacts_destination
    command = [
        sys.executable, "-m", "mlplatform.scripts.mlflow_server",  # `mlflow server`, one process
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", destination,
        "--host", settings.host, "--port", str(settings.mlflow_port),
        "--workers", str(settings.mlflow_workers),
    ]
    url = settings.url(settings.mlflow_port)
    # MLflow 3's server starts a job runner with 7 consumer processes (~2 GB resident
    # here) for its UI's background jobs; the platform uses none of them.
    env = settings.child_environment(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION=str(settings.mlflow_jobs).lower())
    _launch(state, settings, "mlflow", command, env=env, url=url,
            ports={"http": settings.mlflow_port}, info={"artifacts_destination": destination})
    report(f"MLflow tracking server started at {url} (artifacts in {destination})")


def _start_mlserver(settings: PlatformSettings, state: StackState, report: Report) -> None:
    ports = {"HTTP": settings.mlserver_http_port, "gRPC": settings.mlserver_grpc_port,
             "metrics": settings.mlserver_metrics_port}
    require_free_ports(settings.host, ports, "mlserver")
    config_dir = settings.state_path / "mlserver"
    write_server_settings(config_dir, server_options(settings))
    url = settings.url(settings.mlserver_http_port)
    env = settings.child_environment(MLFLOW_TRACKING_URI=state.components["mlflow"].url)
    _launch(state, settings, "mlserver", [executable("mlserver"), "start", str(config_dir)],
            env=env, url=url, what="live",
            ports={"http": ports["HTTP"], "grpc": ports["gRPC"], "metrics": ports["metrics"]},
            info={"config_dir": str(config_dir)})
    report(f"MLServer started at {url} (V2 docs at {url}/v2/docs)")


def _start_gateway(settings: PlatformSettings, state: StackState, report: Report) -> None:
    require_free_ports(settings.host, {"HTTP": settings.gateway_port}, "gateway")
    url = settings.url(settings.gateway_port)
    env = settings.child_environment(
        MLPLATFORM_GATEWAY_MLSERVER_URL=state.components["mlserver"].url,
        MLPLATFORM_GATEWAY_MLSERVER_GRPC=settings.url(state.components["mlserver"].ports["grpc"])
        .removeprefix("http://"),
        MLPLATFORM_GATEWAY_TRACKING_URI=state.components["mlflow"].url,
        MLPLATFORM_GATEWAY_DATABASE_URL=settings.gateway_database_url,
        MLPLATFORM_GATEWAY_FEATURE_STORE_URL=settings.feature_store_url,
        MLPLATFORM_GATEWAY_MLSERVER_REPOSITORY=state.components["mlserver"].info["config_dir"],
        MLPLATFORM_GATEWAY_JOBS_STORAGE=settings.jobs_storage,
    )
    command = [sys.executable, "-m", "uvicorn", "mlplatform.gateway.app:app", "--host", settings.host,
               "--port", str(settings.gateway_port), "--no-server-header"]
    if not settings.gateway_access_log:  # a log line per request costs ~10 % throughput
        command.append("--no-access-log")
    _launch(state, settings, "gateway", command, env=env, url=url,
            ports={"http": settings.gateway_port})
    report(f"gateway started at {url} (API docs at {url}/docs)")


def _start_jupyterhub(settings: PlatformSettings, state: StackState, report: Report) -> None:
    require_free_ports(settings.jupyterhub_ip, {
        "HTTP": settings.jupyterhub_port, "proxy API": settings.jupyterhub_proxy_api_port,
        "hub API": settings.jupyterhub_hub_port}, "jupyterhub")
    try:
        env = jupyterhub.environment(
            settings, mlflow_url=state.components["mlflow"].url,
            mlserver_url=state.components["mlserver"].url,
            gateway_url=state.components["gateway"].url)
        command = jupyterhub.command()
    except jupyterhub.HubSetupError as exc:
        raise StackError(str(exc)) from None
    url = jupyterhub.public_url(settings)
    _launch(state, settings, "jupyterhub", command, env=env, url=url,
            ports={"http": settings.jupyterhub_port, "proxy_api": settings.jupyterhub_proxy_api_port,
                   "hub": settings.jupyterhub_hub_port})
    report(f"JupyterHub started at {url} (shared-password login; notebooks in each new "
           "user's home)")


def _start_prometheus(settings: PlatformSettings, state: StackState, report: Report) -> None:
    require_free_ports(settings.host, {"HTTP": settings.prometheus_port}, "prometheus")

    def address(port: int) -> str:
        return settings.url(port).removeprefix("http://")

    targets = {"mlplatform-gateway": address(state.components["gateway"].ports["http"]),
               "mlserver": address(state.components["mlserver"].ports["metrics"])}
    config = prometheus.write_config(settings, targets)
    url = settings.url(settings.prometheus_port)
    _launch(state, settings, "prometheus", prometheus.command(settings, config),
            env=settings.child_environment(), url=url, ports={"http": settings.prometheus_port},
            info={"config": str(config)}, what="ready")
    report(f"Prometheus started at {url} (scraping the gateway and MLServer every "
           f"{settings.prometheus_scrape_interval}; config {config})")


def server_options(settings: PlatformSettings, *, managed: bool = True) -> ServerOptions:
    """MLServer's settings from ours.  The managed stack loads models through the
    repository API (one failing model cannot stop the server); a config for a
    hand-run ``mlserver start`` loads them at start-up, as users expect."""
    return ServerOptions(
        host=settings.host, http_port=settings.mlserver_http_port,
        grpc_port=settings.mlserver_grpc_port, metrics_port=settings.mlserver_metrics_port,
        parallel_workers=settings.parallel_workers, load_models_at_startup=not managed,
    )


def down(settings: PlatformSettings, report: Report = print,
         only: Sequence[str] = ()) -> List[str]:
    """Stop every process this state folder started (or just the ``only`` ones); returns
    their names."""
    state = StackState(settings.state_path)
    stopped = []
    for name in STOP_ORDER:
        if only and name not in only:
            continue
        process = state.components.pop(name, None)
        if process is None:
            continue
        was_running = process.is_running()
        process.stop()
        state.save()
        report(f"{LABELS[name]} {'stopped' if was_running else 'was not running'} "
               f"(pid {process.pid})")
        stopped.append(name)
    if not stopped:
        report("nothing is running from " + str(settings.state_path))
    return stopped


# ---------------------------------------------------------------- status


@dataclass
class ComponentStatus:
    name: str
    pid: Optional[int]
    url: Optional[str]
    state: str  # healthy | unhealthy | stopped
    detail: str = ""


def status(settings: PlatformSettings) -> List[ComponentStatus]:
    state = StackState(settings.state_path)
    rows = []
    for name in COMPONENTS:
        process = state.components.get(name)
        if process is None:
            if name not in OPTIONAL:
                rows.append(ComponentStatus(name, None, None, "stopped"))
            continue
        if not process.is_running():
            rows.append(ComponentStatus(name, process.pid, process.url, "stopped",
                                        "recorded process is gone"))
            continue
        healthy = http_ok(process.url + HEALTH_PATHS[name])
        detail = _models_detail(process.url) if name == "mlserver" and healthy else ""
        rows.append(ComponentStatus(name, process.pid, process.url,
                                    "healthy" if healthy else "unhealthy", detail))
    return rows


def _models_detail(url: str) -> str:
    try:
        index = requests.post(url + "/v2/repository/index", json={}, timeout=5).json()
    except (requests.RequestException, ValueError):
        return "model index unavailable"
    if not index:
        return "no models loaded"
    return ", ".join(f"{m['name']}/{m.get('version') or '-'} {m.get('state', '?')}" for m in index)


# ---------------------------------------------------------------- MinIO


def start_minio(settings: PlatformSettings, report: Report = print) -> ManagedProcess:
    """Run a real ``minio`` server in the state folder and create the bucket."""
    state = StackState(settings.state_path)
    if _reuse(state, "minio", report):
        return state.components["minio"]
    binary = shutil.which("minio")
    if binary is None:
        raise StackError("no `minio` binary on PATH; see infra/minio/README.md to install one")
    access_key, secret_key = settings.s3_keys()
    if not access_key or not secret_key:
        raise StackError("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or put them in .env): "
                         "MinIO uses them as its root user and password")
    require_free_ports(settings.host, {"S3 API": settings.minio_port,
                                       "console": settings.minio_console_port}, "minio")
    data_dir = settings.state_path / "minio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.url(settings.minio_port)
    env = settings.child_environment(MINIO_ROOT_USER=access_key, MINIO_ROOT_PASSWORD=secret_key)
    command = [binary, "server", str(data_dir),
               "--address", f"{settings.host}:{settings.minio_port}",
               "--console-address", f"{settings.host}:{settings.minio_console_port}"]
    process = _launch(state, settings, "minio", command, env=env, url=url, what="live",
                      ports={"s3": settings.minio_port, "console": settings.minio_console_port})
    created = ensure_bucket(url, settings.s3_bucket, access_key, secret_key)
    report(f"MinIO started at {url} (console {settings.url(settings.minio_console_port)}); "
           f"bucket {settings.s3_bucket!r} {'created' if created else 'present'}")
    return process


__all__ = ["StackError", "StartupError", "up", "down", "status", "local_target", "start_minio"]
