"""JupyterHub for mlplatform (seed 001: the hub on port 6000, its proxy's API on 6001).

``mlplatform up --jupyterhub`` starts ``jupyterhub -f`` this file with the values below
in its environment (from the platform settings; see infra/jupyterhub/README.md):

========================================  ==================================================
MLPLATFORM_JUPYTERHUB_IP                  address users reach (127.0.0.1; ``--public``: 0.0.0.0)
MLPLATFORM_JUPYTERHUB_PORT                the hub's public port (6000)
MLPLATFORM_JUPYTERHUB_PROXY_API_PORT      configurable-http-proxy's API port (6001)
MLPLATFORM_JUPYTERHUB_HUB_PORT            the hub's own API, behind the proxy (6002)
MLPLATFORM_JUPYTERHUB_PASSWORD            the shared password (environment or .env only)
MLPLATFORM_JUPYTERHUB_USERS               who may log in, comma-separated
MLPLATFORM_JUPYTERHUB_STATE               folder for the hub's database, secrets, user homes
MLPLATFORM_JUPYTERHUB_PROXY               the configurable-http-proxy executable
MLPLATFORM_JUPYTERHUB_NOTEBOOKS           notebooks copied into each new user's home
========================================  ==================================================

Embedded default, for one machine: the shared-password authenticator and single-user
servers spawned as local processes of the hub's own OS user.  Everything a notebook
needs to reach the platform (MLflow, S3, MLServer, the gateway) is passed to every
spawned server through its environment -- secrets included, never through files.
For a team: README.md (PAM/OAuth login, Docker/Kubernetes spawners).
"""
import os
import shutil
from pathlib import Path

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
users = {u.strip() for u in env.get("MLPLATFORM_JUPYTERHUB_USERS", "").split(",") if u.strip()}
if users:
    c.Authenticator.allowed_users = users
else:  # anyone who knows the shared password
    c.Authenticator.allow_all = True

# ---------------------------------------------------------------- the users' servers
c.JupyterHub.spawner_class = "simple"  # local processes, as the hub's OS user
homes = state / "users"
c.SimpleLocalProcessSpawner.home_dir_template = str(homes / "{username}")
c.Spawner.default_url = "/lab"
c.Spawner.cmd = [env.get("MLPLATFORM_JUPYTERHUB_SINGLEUSER", "jupyterhub-singleuser")]
# Nothing calls out to the internet (air-gapped networks): no update check.
c.Spawner.args = ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
if os.getuid() == 0:  # containers and CI run as root; Jupyter Server refuses that by default
    c.Spawner.args.append("--ServerApp.allow_root=True")
c.Spawner.http_timeout = 120   # a first JupyterLab start on 2 busy cores takes ~20 s
c.Spawner.start_timeout = 120

PLATFORM_VARIABLES = (
    "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "MLPLATFORM_MLSERVER_URL",
    "MLPLATFORM_GATEWAY_URL", "MLPLATFORM_STATE_DIR", "MLPLATFORM_S3_BUCKET",
    "MLPLATFORM_EXAMPLES", "PATH",
)
c.Spawner.environment = {name: env[name] for name in PLATFORM_VARIABLES if name in env}
notebooks = Path(env.get("MLPLATFORM_JUPYTERHUB_NOTEBOOKS", ""))


def give_notebooks(spawner):
    """A new user's home starts with the platform's notebooks (theirs to change)."""
    home = homes / spawner.user.name
    home.mkdir(parents=True, exist_ok=True)
    if notebooks.is_dir():
        for notebook in sorted(notebooks.glob("*.ipynb")):
            if not (home / notebook.name).exists():
                shutil.copyfile(notebook, home / notebook.name)
    spawner.notebook_dir = str(home)


c.Spawner.pre_spawn_hook = give_notebooks
