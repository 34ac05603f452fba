"""Write MLServer's ``settings.json`` and one ``<model>/model-settings.json`` per model.

Models are looked up in the MLflow registry by name and alias (default
``champion``) or by version.  The alias is resolved *now*, and the generated
``parameters.uri`` names the exact version (``models:/fraud/3``): what MLServer
serves does not change behind its back when somebody moves the alias; running
the generator again (``mlplatform deploy``) is how a new champion goes live.
MLServer resolves ``models:/`` URIs itself, so it needs ``MLFLOW_TRACKING_URI``
in its environment (``mlplatform up`` sets it).  No credentials are written.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from mlplatform.pyfunc_models.conventions import ModelReference, ModelReferenceError
from mlplatform.pyfunc_models.integrity import (
    MANIFEST_TAG,
    SIGNATURE_TAG,
    VERIFY_KEY_ENV,
    IntegrityError,
    check_record,
    key_from_env,
)

if TYPE_CHECKING:  # MLflow is imported where it is used: it costs a second at start-up
    from mlflow.tracking import MlflowClient

# MLServer's MLflow runtime, loading off the event loop (runtime.py: p99 under load during a
# deploy).
RUNTIME = "mlplatform.mlserver_configs.runtime.ThreadLoadingMLflowRuntime"
GENERATED_BY = "mlplatform"
SETTINGS_FILE = "settings.json"
MODEL_SETTINGS_FILE = "model-settings.json"

# Measured by bench/bench_parallel_workers.py on a 2-core machine; see docs/benchmarks.md.
DEFAULT_PARALLEL_WORKERS = 0


class ConfigError(ValueError):
    """A model reference cannot be resolved; the message says which and why."""


@dataclass(frozen=True)
class ServerOptions:
    """Server-wide settings (MLServer's ``settings.json``)."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    parallel_workers: int = DEFAULT_PARALLEL_WORKERS
    server_name: str = "mlplatform"
    debug: bool = False
    # ``mlserver start`` stops the whole server when one model fails to load at
    # start-up; the managed stack turns this off and loads models one by one
    # through the repository API, so one broken model cannot take the others down.
    load_models_at_startup: bool = True
    # gRPC's default cap is 4 MB per message, less than a 100k-row table batch; the
    # gateway sends batches over gRPC, so allow what its body limit allows (128 MB).
    grpc_max_message_bytes: int = 128 * 1024 * 1024


@dataclass(frozen=True)
class BatchingOptions:
    """MLServer's adaptive batching, per model: off when ``max_batch_size`` <= 1."""

    max_batch_size: int = 0
    max_batch_time: float = 0.0


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: str
    alias: Optional[str]
    run_id: str
    storage_uri: str
    # the version's manifest and signature tags (pyfunc_models/integrity.py), for renders
    # that carry them to where the files are loaded (kserve.py)
    integrity: Tuple[Tuple[str, str], ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve(client: "MlflowClient", reference: ModelReference) -> ResolvedModel:
    """Look ``reference`` up in the registry and pin it to one version."""
    from mlflow.exceptions import MlflowException

    try:
        if reference.version:
            version = client.get_model_version(reference.name, reference.version)
        else:
            version = client.get_model_version_by_alias(reference.name, reference.alias)
    except MlflowException as exc:
        wanted = f"/{reference.version}" if reference.version else f"@{reference.alias}"
        raise ConfigError(f"{reference.name}{wanted} is not in the registry: {exc.message}") from exc
    tags = version.tags or {}
    try:  # the registry's record first: a version the key did not sign is never loaded
        check_record(version.name, str(version.version), tags, key_from_env(VERIFY_KEY_ENV))
    except (IntegrityError, OSError) as exc:
        raise ConfigError(f"{version.name}/{version.version} is refused: {exc}") from None
    storage = client.get_model_version_download_uri(version.name, version.version)
    return ResolvedModel(version.name, str(version.version), reference.alias,
                         version.run_id or "", storage,
                         tuple((k, tags[k]) for k in (MANIFEST_TAG, SIGNATURE_TAG) if k in tags))


def models_with_alias(client: "MlflowClient", alias: str) -> List[ModelReference]:
    """Every registered model that has ``alias`` set: what ``deploy`` serves by default."""
    return [
        ModelReference(model.name, alias)
        for model in client.search_registered_models()
        if alias in (model.aliases or {})
    ]


def settings_document(server: ServerOptions) -> Dict[str, Any]:
    return {
        "debug": server.debug,
        "host": server.host,
        "http_port": server.http_port,
        "grpc_port": server.grpc_port,
        "metrics_port": server.metrics_port,
        "parallel_workers": server.parallel_workers,
        "server_name": server.server_name,
        "load_models_at_startup": server.load_models_at_startup,
        "grpc_max_message_length": server.grpc_max_message_bytes,
    }


def model_settings_document(model: ResolvedModel, batching: BatchingOptions) -> Dict[str, Any]:
    document: Dict[str, Any] = {
        "name": model.name,
        "implementation": RUNTIME,
        "parameters": {
            "uri": model.uri,
            "version": model.version,
            "extra": {
                "generated_by": GENERATED_BY,
                "alias": model.alias,
                "run_id": model.run_id,
                "storage_uri": model.storage_uri,
            },
        },
    }
    if batching.max_batch_size > 1:
        document["max_batch_size"] = batching.max_batch_size
        document["max_batch_time"] = batching.max_batch_time
    return document


def write_server_settings(out_dir: Path, server: ServerOptions) -> Path:
    """Only ``settings.json``: the model folders are the serving module's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_json(out_dir / SETTINGS_FILE, settings_document(server))


def write_config(
    out_dir: Path,
    server: ServerOptions,
    models: Iterable[ResolvedModel],
    batching: BatchingOptions = BatchingOptions(),
) -> List[Path]:
    """Write the config folder; folders of models no longer served are removed.

    Only folders this generator wrote are ever removed: a hand-written
    ``model-settings.json`` next to them is left alone.
    """
    written = [write_server_settings(out_dir, server)]
    names = set()
    for model in models:
        if model.name in names:
            raise ConfigError(f"model {model.name!r} is listed twice")
        names.add(model.name)
        path = out_dir / model.name / MODEL_SETTINGS_FILE
        written.append(write_json(path, model_settings_document(model, batching)))
    for stale in generated_model_names(out_dir) - names:
        shutil.rmtree(out_dir / stale)
    return written


def generated_model_names(out_dir: Path) -> set:
    """Names of the model folders in ``out_dir`` that this generator wrote."""
    names = set()
    for path in out_dir.glob(f"*/{MODEL_SETTINGS_FILE}"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        extra = (document.get("parameters") or {}).get("extra") or {}
        if extra.get("generated_by") == GENERATED_BY:
            names.add(path.parent.name)
    return names


def write_json(path: Path, document: Dict[str, Any]) -> Path:
    """Write atomically, so a running MLServer never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(partial, path)
    return path


__all__ = ["BatchingOptions", "ConfigError", "ModelReference", "ModelReferenceError",
           "ResolvedModel", "ServerOptions", "generated_model_names", "model_settings_document",
           "models_with_alias", "resolve", "settings_document", "write_config", "write_json",
           "write_server_settings"]
