"""``python -m mlplatform.scripts.mlflow_server ARGS``: MLflow's own ``mlflow server ARGS``,
except that the CLI process *becomes* the web server instead of waiting beside it.

Why: ``mlflow server`` imports all of MLflow to read its flags, initialises the
backend store, then starts uvicorn as a child process and waits for it -- a
~240 MB process doing nothing for the stack's whole life (bench/stack_memory.py).
Everything ``mlflow server`` does still runs; only its last step, spawning the
web server, becomes an ``exec`` of the very same command and environment.  With
MLflow's job runner on (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``) the command
runs unchanged: the runner needs the parent.

With ``--app-name basic-auth`` (compose, Kubernetes) MLflow's authentication app reads
its settings from an ini file; ``auth_config`` writes one (no secret in it) from the
environment: accounts in ``MLPLATFORM_MLFLOW_AUTH_DATABASE_URI``, a new account may
read everything and change only what it made (``default_permission = READ``), the
first admin's name and password from MLflow's own ``MLFLOW_AUTH_ADMIN_USERNAME`` /
``MLFLOW_AUTH_ADMIN_PASSWORD`` (never a command line).  The platform's own components
get accounts of their own before the server starts (``seed_accounts``):
``MLPLATFORM_MLFLOW_ACCOUNTS=gateway=admin,mlserver=reader`` with each password in
``MLPLATFORM_MLFLOW_PASSWORD_<NAME>`` -- a reader can read every model and change none.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional


def _exec_instead(command: List[str], extra_env: Optional[Dict[str, str]] = None, **_) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, {**os.environ, **(extra_env or {})})


AUTH_DATABASE_ENV = "MLPLATFORM_MLFLOW_AUTH_DATABASE_URI"


def auth_config(folder: str) -> str:
    """The basic-auth app's ini file (in ``folder``), from the environment."""
    database = os.environ.get(AUTH_DATABASE_ENV, "").strip()
    if not database:
        raise SystemExit(f"mlflow_server: --app-name basic-auth needs {AUTH_DATABASE_ENV} "
                         "(where the accounts are kept, e.g. postgresql+psycopg://mlflow@db/"
                         "mlflow_auth) and MLFLOW_AUTH_ADMIN_PASSWORD")
    if not os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        raise SystemExit("mlflow_server: --app-name basic-auth needs MLFLOW_AUTH_ADMIN_PASSWORD "
                         "(the first admin account's password; from a secret)")
    path = os.path.join(folder, "mlflow-auth.ini")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("[mlflow]\n"
                     "default_permission = READ\n"
                     f"database_uri = {database}\n"
                     f"admin_username = {os.environ.get('MLFLOW_AUTH_ADMIN_USERNAME', 'admin')}\n"
                     "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


ACCOUNTS_ENV = "MLPLATFORM_MLFLOW_ACCOUNTS"
ROLES = {"admin": True, "reader": False}


def accounts_wanted() -> List[tuple]:
    """(name, is_admin, password) of MLPLATFORM_MLFLOW_ACCOUNTS, each password from its
    own variable; SystemExit naming what is missing."""
    wanted = []
    for item in filter(None, (part.strip() for part in
                              os.environ.get(ACCOUNTS_ENV, "").split(","))):
        name, _, role = item.partition("=")
        if role not in ROLES or not name.isidentifier():
            raise SystemExit(f"mlflow_server: {ACCOUNTS_ENV}: {item!r} is not NAME=admin or "
                             "NAME=reader")
        variable = f"MLPLATFORM_MLFLOW_PASSWORD_{name.upper()}"
        password = os.environ.get(variable, "")
        if len(password) < 12:
            raise SystemExit(f"mlflow_server: account {name!r} needs {variable} (12 characters "
                             "or more; from a secret)")
        wanted.append((name, ROLES[role], password))
    return wanted


def seed_accounts(database: str) -> None:
    """Create (or bring up to date) the platform's accounts in the auth database: the
    same store and password hashing as MLflow's own user API."""
    wanted = accounts_wanted()
    if not wanted:
        return
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database)
    for name, is_admin, password in wanted:
        if store.has_user(name):
            store.update_user(name, password=password, is_admin=is_admin)
        else:
            store.create_user(name, password, is_admin=is_admin)
        print(f"mlflow_server: account {name} ({'admin' if is_admin else 'reader'}) ready",
              file=sys.stderr)


def main() -> int:
    import tempfile

    import mlflow.server
    from mlflow.cli import cli

    arguments = sys.argv[1:]
    if any(a in ("--app-name=basic-auth",) for a in arguments) or any(
            a == "--app-name" and b == "basic-auth" for a, b in zip(arguments, arguments[1:])):
        if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
            # the auth app's CSRF key; one per start, shared by this server's workers (set
            # it yourself for several replicas behind one name)
            import secrets

            os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_urlsafe(32)
        if not os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
            os.environ["MLFLOW_AUTH_CONFIG_PATH"] = auth_config(
                tempfile.mkdtemp(prefix="mlflow-auth-"))
        if os.environ.get(AUTH_DATABASE_ENV):
            seed_accounts(os.environ[AUTH_DATABASE_ENV])
    if os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "").lower() not in ("true", "1"):
        mlflow.server._exec_cmd = _exec_instead
    return cli.main(args=["server", *arguments], prog_name="mlflow")


if __name__ == "__main__":
    sys.exit(main())
