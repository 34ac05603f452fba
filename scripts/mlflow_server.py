"""``python -m mlplatform.scripts.mlflow_server ARGS``: MLflow's own ``mlflow server ARGS``,
except that the CLI process *becomes* the web server instead of waiting beside it.

Why: ``mlflow server`` imports all of MLflow to read its flags, initialises the
backend store, then starts uvicorn as a child process and waits for it -- a
~240 MB process doing nothing for the stack's whole life (bench/stack_memory.py).
Everything ``mlflow server`` does still runs; only its last step, spawning the
web server, becomes an ``exec`` of the very same command and environment.  With
MLflow's job runner on (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``) the command
runs unchanged: the runner needs the parent.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional


def _exec_instead(command: List[str], extra_env: Optional[Dict[str, str]] = None, **_) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, {**os.environ, **(extra_env or {})})


def main() -> int:
    import mlflow.server
    from mlflow.cli import cli

    if os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "").lower() not in ("true", "1"):
        mlflow.server._exec_cmd = _exec_instead
    return cli.main(args=["server", *sys.argv[1:]], prog_name="mlflow")


if __name__ == "__main__":
    sys.exit(main())
