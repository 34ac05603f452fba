"""Gateway settings (``MLPLATFORM_GATEWAY_*`` environment variables or ``.env``).

Each route's model is ``name`` or ``name@alias`` (default alias ``champion``);
``?model=`` on /forward, /forward_batch, /evaluate and /metadata picks any
served model instead.
"""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlplatform.pyfunc_models.conventions import CHAMPION, DEFAULT_TARGET


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLPLATFORM_GATEWAY_", env_file=".env",
                                      extra="ignore")

    mlserver_url: str = "http://127.0.0.1:8000"
    # host:port of the server's V2 gRPC endpoint, for table batches; empty: batches over REST.
    mlserver_grpc: str = ""
    tracking_uri: str = "http://127.0.0.1:5000"
    timeout: float = 30.0                  # seconds for one call to MLServer
    # Concurrent /forward, /predict calls to one model share one V2 request (coalescing.py);
    # at most this many documents per request, 0 or 1 turns sharing off.
    coalesce_max_batch: int = 32
    # Column data per table request (a larger batch goes as several requests, in order);
    # under MLServer's gRPC message limit (128 MB, mlserver_configs).
    table_request_bytes: int = 64 * 1024 * 1024
    max_body_bytes: int = 128 * 1024 * 1024  # seed 000: RabbitMQ's 128 MB message limit
    # What a zip of images may unpack to (counted while inflating, whatever its headers say);
    # the images are held in memory for one request, so this bounds the gateway's memory.
    max_unpacked_bytes: int = 64 * 1024 * 1024
    # Entries one zip may hold, read from its end records before its directory is parsed
    # (ZipFile() builds every entry up front: 300,000 empty ones, +149 MB and 2.2 s).
    max_zip_entries: int = 10_000
    alias: str = CHAMPION
    # The serving target whose recorded versions the gateway routes to
    # (mlserver_configs.serving), and how long a record is trusted before it is
    # refreshed in the background.
    target: str = DEFAULT_TARGET
    registry_ttl: float = 10.0

    forward_model: str = "echo"
    batch_model: str = "fraud"
    predict_model: str = "fraud"
    scenario_model: str = "fraud_scenario"
    label_column: str = "label"            # ground truth column for /evaluate

    # Predict routes (/forward, /forward_batch, /evaluate, /predict, ...) without a token?
    # Write routes (/jobs) always need one.
    public_predict: bool = True
    # Job state and token hashes, and where job files go (s3://bucket/prefix or a folder);
    # by default both under the platform's state folder, never the current directory.
    database_url: str = ""
    jobs_storage: str = ""
    # Labelled training data (PUT /add_data, the retraining pipeline); default: a SQLite
    # file in the state folder, as `mlplatform pipeline` uses.
    feature_store_url: str = ""
    # The model repository folder MLServer loads from (set by `mlplatform up`): the
    # deploy and rollback routes write model settings there (mlserver_configs.serving).
    mlserver_repository: str = ""
    # Serve what this alias points to within this many seconds of a move made anywhere
    # (the MLflow UI, MlflowClient); 0 turns it off (follower.py).
    alias_poll: float = 10.0
    # Canary: a call carrying this header goes to the same side for the same value.
    canary_key_header: str = "X-Canary-Key"
    # Shadow copies waiting for their batch or in flight at most; beyond, a copy is
    # dropped (and counted), never queued.  At 1,000 req/s a 50 ms window holds ~50.
    shadow_max_in_flight: int = 1024
    follow_alias: str = CHAMPION
    job_timeout: float = 3600.0                  # seconds one job may run
    # The registry account a file job's code uses where MLflow requires one (compose: a
    # reader); written to the job's own ~/.mlflow/credentials, never its environment.
    job_tracking_username: str = ""
    job_tracking_password: SecretStr = SecretStr("")
    # Seconds a gateway's claim on a running job holds without a heartbeat (renewed every
    # third of it): how long a job of a gateway that died waits before another takes it.
    job_lease: float = 30.0

    # Metrics, prediction log, drift and the live view (monitoring.py); false: none of them.
    monitoring: bool = True
    # Every answered prediction in a database table (prediction_log.py); default: the
    # feature-store database.  At most this many wait to be written (then the oldest are
    # dropped and counted); rows older than the retention are deleted.
    prediction_log: bool = True
    prediction_log_url: str = ""
    prediction_log_max_pending: int = 100_000
    prediction_log_retention_days: float = 7.0
    # Input drift: PSI over the last `drift_window` inputs per model version, with a
    # verdict once `drift_min_inputs` were seen (drift.py).
    drift_window: int = 1000
    drift_min_inputs: int = 100
    # A version's window (and gauges) is forgotten after this many seconds without input.
    drift_idle_seconds: float = 900.0

    @property
    def zip_limits(self):
        from .batch import ZipLimits  # here: batch imports pandas, the CLI reads settings

        return ZipLimits(self.max_unpacked_bytes, self.max_zip_entries)

    def model_post_init(self, context) -> None:
        state = Path(os.environ.get("MLPLATFORM_STATE_DIR") or ".mlplatform").expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{state / 'gateway.db'}"
        if not self.jobs_storage:
            self.jobs_storage = str(state / "jobs")
        if not self.feature_store_url:
            self.feature_store_url = (os.environ.get("MLPLATFORM_FEATURE_STORE_URL")
                                      or f"sqlite:///{state / 'features.db'}")
        if not self.prediction_log_url:
            self.prediction_log_url = self.feature_store_url
