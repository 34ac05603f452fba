"""JupyterHub for mlplatform (seed 001: the hub on port 6000, its proxy's API on 6001).

``mlplatform up --jupyterhub`` starts ``jupyterhub -f`` this file with the values below
in its environment (from the platform settings; see infra/jupyterhub/README.md):

========================================  ==================================================
MLPLATFORM_JUPYTERHUB_IP                  address users reach (127.0.0.1; ``--public``: 0.0.0.0)
MLPLATFORM_JUPYTERHUB_PORT                the hub's public port (6000)
MLPLATFORM_JUPYTERHUB_PROXY_API_PORT      configurable-http-proxy's API port (6001)
MLPLATFORM_JUPYTERHUB_HUB_PORT            the hub's own API, behind the proxy (6002)
MLPLATFORM_JUPYTERHUB_PASSWORD            the shared password (environment or .env only)
MLPLATFORM_JUPYTERHUB_USERS               who may log in, comma-separated (required)
MLPLATFORM_JUPYTERHUB_STATE               folder for the hub's database, secrets, user homes
MLPLATFORM_JUPYTERHUB_PROXY               the configurable-http-proxy executable
MLPLATFORM_JUPYTERHUB_NOTEBOOKS           notebooks copied into each new user's home
MLPLATFORM_JUPYTERHUB_HOMES               where the users' homes are (<STATE>/users)
MLPLATFORM_JUPYTERHUB_ACCOUNTS            ``per-user`` (the compose image) or ``shared``
========================================  ==================================================

Who may log in is always an explicit list: the hub refuses to start without one.
``per-user`` (the compose image; the hub runs as root): every user gets an OS account of
their own, made at their first spawn, and their server runs as that account -- never as
root, unable to read the hub's database, its cookie secret or another user's home.
``shared`` (``mlplatform up --jupyterhub``, one person's machine): each server is a local
process of the hub's own OS user; where that user is root (a CI container) Jupyter needs
``allow_root`` -- the multi-user deployment never runs that way.
What a notebook needs to reach the platform (MLflow, MLServer, the gateway) is passed to
every spawned server through its environment; no S3 keys (artifacts travel through
MLflow's proxy).  Where MLflow runs with authentication (compose: the hub's own
MLFLOW_TRACKING_USERNAME / _PASSWORD, an admin account), each user gets an MLflow account
of their own -- a new password at each spawn, in that server's environment only.
For a team: README.md (PAM/OAuth login, Docker/Kubernetes spawners).
"""
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from mlplatform.scripts.jupyterhub import HubSetupError, check_users

c = get_config()  # noqa: F821 -- provided by JupyterHub when it loads this file

env = os.environ
state = Path(env["MLPLATFORM_JUPYTERHUB_STATE"])
state.mkdir(parents=True, exist_ok=True)

# ---------------------------------------------------------------- where it listens
c.JupyterHub.ip = env.get("MLPLATFORM_JUPYTERHUB_IP", "127.0.0.1")
c.JupyterHub.port = int(env.get("MLPLATFORM_JUPYTERHUB_PORT", "6000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env.get("MLPLATFORM_JUPYTERHUB_HUB_PORT", "6002"))
proxy_api = int(env.get("MLPLATFORM_JUPYTERHUB_PROXY_API_PORT", "6001"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [env.get("MLPLATFORM_JUPYTERHUB_PROXY",
                                           "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

# ---------------------------------------------------------------- the hub's own files
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
# `mlplatform down` stops the hub; the proxy and the users' servers go with it.
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# ---------------------------------------------------------------- who logs in
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = env["MLPLATFORM_JUPYTERHUB_PASSWORD"]
users = env.get("MLPLATFORM_JUPYTERHUB_USERS", "")
try:  # the same rule `mlplatform up --jupyterhub` and the container role check first
    check_users(users)
except HubSetupError as exc:
    sys.exit(str(exc))
c.Authenticator.allowed_users = {name.strip() for name in users.split(",") if name.strip()}

# ---------------------------------------------------------------- the users' servers
homes = Path(env.get("MLPLATFORM_JUPYTERHUB_HOMES") or state / "users")
homes.mkdir(parents=True, exist_ok=True)
PER_USER = env.get("MLPLATFORM_JUPYTERHUB_ACCOUNTS", "shared") == "per-user"
c.Spawner.default_url = "/lab"
c.Spawner.cmd = [env.get("MLPLATFORM_JUPYTERHUB_SINGLEUSER", "jupyterhub-singleuser")]
# Nothing calls out to the internet (air-gapped networks): no update check.
c.Spawner.args = ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
if PER_USER:  # one OS account per user (made at the first spawn); never a root server
    if os.getuid() != 0:
        sys.exit("MLPLATFORM_JUPYTERHUB_ACCOUNTS=per-user: the hub makes OS accounts and runs "
                 "servers as them, so it runs as root (its servers never do)")
    c.JupyterHub.spawner_class = "localprocess"
    homes.chmod(0o755)  # each home inside is its owner's alone (0700)
else:         # local processes of the hub's own OS user (one person's machine)
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(homes / "{username}")
    if os.getuid() == 0:  # a CI or dev container; Jupyter Server refuses root by default
        c.Spawner.args.append("--ServerApp.allow_root=True")
c.Spawner.http_timeout = 120   # a first JupyterLab start on 2 busy cores takes ~20 s
c.Spawner.start_timeout = 120

PLATFORM_VARIABLES = (
    "MLFLOW_TRACKING_URI", "MLPLATFORM_MLSERVER_URL", "MLPLATFORM_GATEWAY_URL",
    "MLPLATFORM_STATE_DIR", "MLPLATFORM_EXAMPLES", "PATH",
)
c.Spawner.environment = {name: env[name] for name in PLATFORM_VARIABLES if name in env}
notebooks = Path(env.get("MLPLATFORM_JUPYTERHUB_NOTEBOOKS", ""))


def account(name: str, home: Path):
    """The OS account ``name`` (made if missing: no login shell, its home ``home``)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--home-dir", str(home), "--no-create-home", "--shell",
                        "/usr/sbin/nologin", "--user-group", name], check=True,
                       stdin=subprocess.DEVNULL)
        return pwd.getpwnam(name)


def mlflow_account(name: str) -> dict:
    """The user's own MLflow account (made if missing, a new password each time); {} where
    MLflow runs without authentication (the local stack)."""
    if not env.get("MLFLOW_TRACKING_USERNAME"):
        return {}
    import secrets

    from mlflow.exceptions import RestException
    from mlflow.server import get_app_client

    client = get_app_client("basic-auth", tracking_uri=env["MLFLOW_TRACKING_URI"])
    password = secrets.token_urlsafe(24)
    try:
        client.get_user(name)
        client.update_user_password(name, password)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_user(name, password)
    return {"MLFLOW_TRACKING_USERNAME": name, "MLFLOW_TRACKING_PASSWORD": password}


def give_notebooks(spawner):
    """A new user's home starts with the platform's notebooks (theirs to change)."""
    home = homes / spawner.user.name
    home.mkdir(parents=True, exist_ok=True)
    if notebooks.is_dir():
        for notebook in sorted(notebooks.glob("*.ipynb")):
            if not (home / notebook.name).exists():
                shutil.copyfile(notebook, home / notebook.name)
    if PER_USER:
        owner = account(spawner.user.name, home)
        if owner.pw_uid < 1000:  # root, daemon, ...: a server never runs as a system account
            raise PermissionError(f"{spawner.user.name!r} is a system account on this machine: "
                                  "pick another user name (MLPLATFORM_JUPYTERHUB_USERS)")
        for path in [home, *home.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        home.chmod(0o700)
    spawner.notebook_dir = str(home)
    spawner.environment = {**c.Spawner.environment, **mlflow_account(spawner.user.name)}


c.Spawner.pre_spawn_hook = give_notebooks
