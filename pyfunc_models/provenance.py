"""Where a registered model came from, read back from the registry and its ONNX file.

Used by ``mlplatform metadata`` (and by anything else that must show a model's
provenance): registry facts (name, version, aliases, run, experiment) plus the
``metadata_props`` stamped into the ONNX file at training time, which travel
with the file wherever it is copied.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .onnx_tabular import read_metadata

ONNX_PATH_IN_MODEL = "artifacts/model.onnx"


class ProvenanceError(LookupError):
    """The model, version or alias is not registered, or the model has no ONNX file."""


def model_provenance(tracking_uri: str, name: str, alias: Optional[str] = None,
                     version: Optional[str] = None) -> Dict[str, Any]:
    """Registry facts and the ONNX ``metadata_props`` (None if not an ONNX model)."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        found = (client.get_model_version(name, version) if version
                 else client.get_model_version_by_alias(name, alias or "champion"))
    except MlflowException as exc:
        wanted = f"/{version}" if version else f"@{alias or 'champion'}"
        raise ProvenanceError(f"{name}{wanted} is not in the registry: {exc.message}") from exc
    run = client.get_run(found.run_id) if found.run_id else None
    experiment = client.get_experiment(run.info.experiment_id).name if run else ""
    registry = {
        "model_name": found.name,
        "version": str(found.version),
        "aliases": list(found.aliases or []),
        "run_id": found.run_id or "",
        "experiment_name": experiment,
        "source": found.source,
    }
    try:
        onnx: Optional[Dict[str, str]] = onnx_metadata(tracking_uri, found.name, str(found.version))
    except ProvenanceError:
        onnx = None  # not an ONNX model: registry facts only
    return {"registry": registry, "onnx": onnx}


def onnx_metadata(tracking_uri: str, name: str, version: str) -> Dict[str, str]:
    """Download only the version's ONNX file and read its metadata."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    model_root = client.get_model_version_download_uri(name, version).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="mlplatform-onnx-") as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{model_root}/{ONNX_PATH_IN_MODEL}", dst_path=folder,
                tracking_uri=tracking_uri)
        except (MlflowException, OSError) as exc:
            raise ProvenanceError(
                f"{name}/{version} has no ONNX file ({ONNX_PATH_IN_MODEL}); "
                "only ONNX models carry training metadata") from exc
        return read_metadata(Path(local))
