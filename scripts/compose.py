"""A docker-compose project of the platform (``docker-compose.yml``, plus
``docker-compose.ci.yml`` where Docker Hub cannot be reached), for the tests and benchmarks
that run the containers: up on free published ports with generated secrets, register and
deploy through the containers' own CLI, down with nothing left behind."""
from __future__ import annotations

import os
import secrets
import subprocess
from typing import Dict, List, Optional, Sequence

from .images import SOURCE_ROOT, jupyterhub_image, platform_image
from .processes import free_port

PUBLISHED_PORTS = ("MLPLATFORM_GATEWAY_PORT", "MLFLOW_PORT", "MINIO_CONSOLE_PORT",
                   "PROMETHEUS_PORT", "GRAFANA_PORT", "JUPYTERHUB_PORT")
SECRETS = ("MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD",
           "GATEWAY_DB_PASSWORD", "FEATURES_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD",
           "MLFLOW_GATEWAY_PASSWORD", "MLFLOW_MLSERVER_PASSWORD", "MLFLOW_JOBS_PASSWORD",
           "MLFLOW_JUPYTERHUB_PASSWORD",
           "GRAFANA_ADMIN_PASSWORD", "JUPYTERHUB_PASSWORD")
HUB_USERS = "ada,grace"


def compose_files(ci: bool = True) -> List[str]:
    files = ["docker-compose.yml"] + (["docker-compose.ci.yml"] if ci else [])
    return [argument for name in files for argument in ("-f", str(SOURCE_ROOT / name))]


def environment(ports: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """What ``.env`` holds on a real host: generated secrets, the hub's users, the image,
    published ports."""
    return {**os.environ, "MINIO_ROOT_USER": "mlplatform", "JUPYTERHUB_USERS": HUB_USERS,
            **{name: secrets.token_urlsafe(16) for name in SECRETS},
            "MLPLATFORM_IMAGE": platform_image(), "MLPLATFORM_JUPYTERHUB_IMAGE": jupyterhub_image(),
            **(ports or {})}


class ComposeError(RuntimeError):
    """A docker-compose command failed; the message carries its output."""


class ComposeProject:
    """``public_predict``: open the gateway's predict routes (closed by default in compose;
    the benchmarks open them to measure the path without token checks)."""

    def __init__(self, project: Optional[str] = None, ci: bool = True,
                 public_predict: bool = False):
        self.project = project or f"mlplatform-{secrets.token_hex(4)}"
        self.files = compose_files(ci)
        self.ports = {name: str(free_port()) for name in PUBLISHED_PORTS}
        self.env = environment(self.ports)
        self.env["MLPLATFORM_GATEWAY_PUBLIC_PREDICT"] = str(public_predict).lower()

    def run(self, *arguments: str, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker-compose", "-p", self.project, *self.files, *arguments],
                                env=self.env, capture_output=True, text=True, cwd=SOURCE_ROOT,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise ComposeError(f"docker-compose {' '.join(arguments)} failed:\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    @property
    def gateway_url(self) -> str:
        return self.url("MLPLATFORM_GATEWAY_PORT")

    def up(self, *services: str) -> None:
        self.run("up", "-d", "--no-build", *services, timeout=900)

    def down(self, check: bool = False) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "20", check=check)

    def register(self, model: str, alias: str = "champion") -> str:
        """``mlplatform register`` inside the MLflow container."""
        return self.run("exec", "-T", "mlflow", "mlplatform", "register", model, "--alias", alias,
                        "--tracking-uri", "http://localhost:5000").stdout

    def deploy(self, references: Sequence[str]) -> str:
        """``mlplatform deploy`` inside the gateway container, onto the mlserver service."""
        models = [argument for reference in references for argument in ("--model", reference)]
        return self.run("exec", "-T", "gateway", "mlplatform", "deploy", *models,
                        "--mlserver-url", "http://mlserver:8080", "--repository", "/srv/models",
                        "--target", "compose", "--tracking-uri", "http://mlflow:5000").stdout

    def token(self, group: str, *scopes: str) -> str:
        """A gateway token (``mlplatform token create`` inside the gateway container)."""
        flags = [argument for scope in scopes for argument in ("--scope", scope)]
        return self.run("exec", "-T", "gateway", "mlplatform", "token", "create", "--group",
                        group, *flags).stdout.strip().splitlines()[-1]

    def logs(self, lines: int = 60) -> str:
        return self.run("logs", "--no-color", "--tail", str(lines), check=False).stdout[-12000:]

    def leftovers(self) -> List[str]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind, extra in (("container", ["-a"]), ("volume", []), ("network", [])):
            listed = subprocess.run(["docker", kind, "ls", "-q", *extra, "--filter", label],
                                    capture_output=True, text=True, check=True).stdout.split()
            found += [f"{kind} {item}" for item in listed]
        return found


__all__ = ["ComposeProject", "ComposeError", "compose_files", "environment"]
