"""JupyterHub beside the stack: the data scientist's door (``mlplatform up --jupyterhub``).

The hub runs ``infra/jupyterhub/jupyterhub_config.py`` with everything it needs in its
environment: where it listens, the shared password, its state folder under the stack's,
the proxy installed by ``make`` into ``infra/jupyterhub/node_modules``, and the
addresses every spawned notebook server gets (MLflow, MLServer, the gateway).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Dict

from .settings import PlatformSettings

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout: infra/, notebooks/, examples/
HUB_FOLDER = SOURCE_ROOT / "infra" / "jupyterhub"
CONFIG = HUB_FOLDER / "jupyterhub_config.py"
PROXY = HUB_FOLDER / "node_modules" / ".bin" / "configurable-http-proxy"
HEALTH_PATH = "/hub/health"

NO_USERS = (
    "JupyterHub needs an explicit list of users, each a lower-case account name: set "
    "MLPLATFORM_JUPYTERHUB_USERS=alice,bob in the environment or in .env (in compose: "
    "JUPYTERHUB_USERS in .env)")
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
RESERVED = {"root", "admin", "gateway", "mlserver", "jupyterhub"}  # the platform's accounts


def check_users(users: str) -> None:
    """The hub's allowed users: a non-empty list of account names (HubSetupError)."""
    names = [name.strip() for name in users.split(",") if name.strip()]
    wrong = [name for name in names if not USER_NAME.fullmatch(name) or name in RESERVED]
    if not names or wrong:
        raise HubSetupError(NO_USERS + (f" (not a user's account name: {', '.join(wrong)})"
                                        if wrong else ""))


NO_PASSWORD = (
    "JupyterHub needs a shared password: set MLPLATFORM_JUPYTERHUB_PASSWORD in the "
    "environment or in .env (never commit it), e.g.\n"
    "  echo \"MLPLATFORM_JUPYTERHUB_PASSWORD=$(python3 -c 'import secrets; "
    "print(secrets.token_urlsafe(16))')\" >> .env")


class HubSetupError(RuntimeError):
    """The hub cannot start; the message says what to install or set."""


def proxy_executable() -> str:
    if PROXY.exists():
        return str(PROXY)
    found = shutil.which("configurable-http-proxy")
    if not found:
        raise HubSetupError(
            "configurable-http-proxy is not installed: run `make demo` (it runs "
            f"`npm ci --prefix {HUB_FOLDER}`)")
    return found


def command() -> list:
    if not CONFIG.exists():
        raise HubSetupError(f"{CONFIG} is missing: the hub runs from a source checkout")
    hub = Path(sys.executable).with_name("jupyterhub")
    if not hub.exists():
        raise HubSetupError("jupyterhub is not installed in this environment: run `make demo`")
    return [str(hub), "-f", str(CONFIG)]


def environment(settings: PlatformSettings, *, mlflow_url: str, mlserver_url: str,
                gateway_url: str) -> Dict[str, str]:
    """The hub's environment; the spawned servers get the platform's part of it."""
    if settings.jupyterhub_password is None or not settings.jupyterhub_password.get_secret_value():
        raise HubSetupError(NO_PASSWORD)
    check_users(settings.jupyterhub_users)
    bin_dir = str(Path(sys.executable).parent)
    path = settings.child_environment().get("PATH", "")
    return settings.child_environment(
        MLPLATFORM_JUPYTERHUB_IP=settings.jupyterhub_ip,
        MLPLATFORM_JUPYTERHUB_PORT=str(settings.jupyterhub_port),
        MLPLATFORM_JUPYTERHUB_PROXY_API_PORT=str(settings.jupyterhub_proxy_api_port),
        MLPLATFORM_JUPYTERHUB_HUB_PORT=str(settings.jupyterhub_hub_port),
        MLPLATFORM_JUPYTERHUB_PASSWORD=settings.jupyterhub_password.get_secret_value(),
        MLPLATFORM_JUPYTERHUB_USERS=settings.jupyterhub_users,
        MLPLATFORM_JUPYTERHUB_STATE=str(settings.state_path.resolve() / "jupyterhub"),
        MLPLATFORM_JUPYTERHUB_PROXY=proxy_executable(),
        MLPLATFORM_JUPYTERHUB_SINGLEUSER=str(Path(bin_dir) / "jupyterhub-singleuser"),
        MLPLATFORM_JUPYTERHUB_NOTEBOOKS=str(SOURCE_ROOT / "notebooks"),
        # what the notebooks read (no S3 keys: artifacts travel through MLflow's proxy)
        MLFLOW_TRACKING_URI=mlflow_url,
        MLPLATFORM_MLSERVER_URL=mlserver_url,
        MLPLATFORM_GATEWAY_URL=gateway_url,
        MLPLATFORM_STATE_DIR=str(settings.state_path.resolve()),
        MLPLATFORM_EXAMPLES=str(SOURCE_ROOT / "examples"),
        PATH=bin_dir + (":" + path if path else ""),
    )


def public_url(settings: PlatformSettings) -> str:
    """Where a browser on this machine reaches the hub (0.0.0.0 binds every interface)."""
    host = "127.0.0.1" if settings.jupyterhub_ip in ("0.0.0.0", "") else settings.jupyterhub_ip
    return f"http://{host}:{settings.jupyterhub_port}"
