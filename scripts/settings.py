"""Platform settings: command-line flags, then environment, then ``.env``, then defaults.

Environment variables take the ``MLPLATFORM_`` prefix (``MLPLATFORM_MLFLOW_PORT``);
the S3 ones also accept the names MLflow and boto3 already use
(``MLFLOW_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), so
an existing MLflow + MinIO environment works as it is.  Default ports follow the
platform guide: MLflow 5000, MinIO 9000 (console 9001), MLServer 8000/8001/8002.

Credentials are ``SecretStr``: they print as ``**********`` and are handed to
child processes only through their environment, never written to a file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlplatform.mlserver_configs.generator import DEFAULT_PARALLEL_WORKERS


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLPLATFORM_", env_file=".env", extra="ignore", populate_by_name=True,
    )

    state_dir: Path = Path(".mlplatform")
    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    mlserver_http_port: int = 8000
    mlserver_grpc_port: int = 8001
    mlserver_metrics_port: int = 8002
    gateway_port: int = 8080
    gateway_access_log: bool = False
    # One web worker each is plenty for one team's registry traffic; every extra MLflow
    # worker is another ~250 MB process (bench/stack_memory.py, docs/benchmarks.md).
    mlflow_workers: int = 1
    mlflow_jobs: bool = False  # MLflow's background job runner (7 processes, ~2 GB)
    parallel_workers: int = DEFAULT_PARALLEL_WORKERS
    alias: str = "champion"
    startup_timeout: float = 180.0

    s3_endpoint_url: Optional[str] = Field(
        None, validation_alias=_env("MLPLATFORM_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"))
    s3_bucket: str = "mlplatform"
    aws_access_key_id: Optional[SecretStr] = Field(
        None, validation_alias=_env("MLPLATFORM_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: Optional[SecretStr] = Field(
        None, validation_alias=_env("MLPLATFORM_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"))

    minio_port: int = 9000
    minio_console_port: int = 9001

    # JupyterHub (`mlplatform up --jupyterhub`; seed 001: hub 6000, proxy API 6001).  The
    # shared password comes from the environment or .env only -- never from a file in git.
    jupyterhub_ip: str = "127.0.0.1"
    jupyterhub_port: int = 6000
    jupyterhub_proxy_api_port: int = 6001
    jupyterhub_hub_port: int = 6002  # the hub's own API, reached through the proxy
    jupyterhub_password: Optional[SecretStr] = None
    jupyterhub_users: str = ""  # who may log in, comma-separated (required by `up --jupyterhub`)

    # Prometheus (`mlplatform up --monitoring`), scraping the gateway and MLServer.
    prometheus_port: int = 9090
    prometheus_scrape_interval: str = "5s"
    prometheus_retention: str = "15d"

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_endpoint_url)

    @property
    def artifacts_destination(self) -> str:
        """Where the tracking server stores artifacts: the S3 bucket, else a local folder."""
        if self.uses_s3:
            return f"s3://{self.s3_bucket}"
        return str(self.state_path / "artifacts")

    @property
    def gateway_database_url(self) -> str:
        """Job state and token hashes; the gateway and `mlplatform token` share it."""
        return os.environ.get("MLPLATFORM_GATEWAY_DATABASE_URL") or (
            f"sqlite:///{self.state_path / 'gateway.db'}")

    @property
    def feature_store_url(self) -> str:
        """Labelled training data (the feature store): a SQLite file in the state folder,
        or any SQLAlchemy URL in ``MLPLATFORM_FEATURE_STORE_URL``."""
        return os.environ.get("MLPLATFORM_FEATURE_STORE_URL") or (
            f"sqlite:///{self.state_path / 'features.db'}")

    @property
    def jobs_storage(self) -> str:
        """Job inputs and outputs live in the artifact store, next to the models."""
        if self.uses_s3:
            return f"s3://{self.s3_bucket}/jobs"
        return str(self.state_path / "jobs")

    def url(self, port: int) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{port}"

    def s3_environment(self) -> Dict[str, str]:
        """The variables MLflow and boto3 read, for child processes only."""
        if not self.uses_s3:
            return {}
        env = {"MLFLOW_S3_ENDPOINT_URL": str(self.s3_endpoint_url)}
        if self.aws_access_key_id:
            env["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id.get_secret_value()
        if self.aws_secret_access_key:
            env["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key.get_secret_value()
        return env

    def s3_keys(self) -> Tuple[Optional[str], Optional[str]]:
        """(access key, secret key) in clear text, for boto3 only."""
        return tuple(key.get_secret_value() if key else None  # type: ignore[return-value]
                     for key in (self.aws_access_key_id, self.aws_secret_access_key))

    def child_environment(self, **extra: str) -> Dict[str, str]:
        return {**os.environ, **self.s3_environment(), **extra}


def load_settings(**overrides: Any) -> PlatformSettings:
    """Settings with the flags that were given (``None`` means "not given")."""
    return PlatformSettings(**{key: value for key, value in overrides.items() if value is not None})
