"""A model's life over HTTP: add data, retrain, compare, promote, roll back.

The routes (``routers/lifecycle.py``) only read requests; the work is here, in
plain functions the routes run in worker threads (MLflow's client and SQLAlchemy
block).  What is served changes only through ``mlserver_configs.serving`` --
``promote`` and ``rollback`` -- the same code as ``mlplatform deploy``.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from mlplatform.pyfunc_models.conventions import CHAMPION, deployed_tag, served_tag

from .errors import BadRequest, Conflict, NotFound, Unavailable, UpstreamRefused
from .settings import GatewaySettings

PLOTS = "plots"


def _client(settings: GatewaySettings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _registry_call(what: str, call):
    """``call()``; the registry unreachable is a 503, a missing model a 404."""
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(f"{what}: {exc.message}") from exc
        if exc.error_code == "INVALID_PARAMETER_VALUE":  # e.g. a name MLflow refuses
            raise BadRequest(f"{what}: {exc.message}", field="model") from exc
        raise Unavailable(f"the model registry refused {what}: {exc.message}") from exc
    except (OSError, ConnectionError) as exc:
        raise Unavailable(f"the model registry cannot be read ({type(exc).__name__})") from exc


# ---------------------------------------------------------------- data

def add_data(settings: GatewaySettings, model: str, data: bytes, filename: str) -> Dict[str, Any]:
    """Validate every row of a CSV against the model's dataset, then append them as one
    batch (nothing is written unless every row is valid)."""
    from sqlalchemy.exc import SQLAlchemyError

    from mlplatform.pyfunc_models.feature_store import DataError, FeatureStore, dataset_for

    try:
        dataset = dataset_for(model)
    except KeyError as exc:
        raise BadRequest(exc.args[0], field="model") from exc
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as exc:
        raise BadRequest(f"unreadable CSV {filename!r}: {str(exc).splitlines()[0]}",
                         field="file") from exc
    store = FeatureStore(settings.feature_store_url)
    try:
        store.ensure_seeded(dataset)
        batch = store.add(dataset, frame, filename)
        size = store.size(dataset)
    except DataError as exc:
        raise BadRequest(str(exc), field=exc.column or "file") from exc
    except SQLAlchemyError as exc:
        raise Unavailable(f"the feature store cannot be written ({type(exc).__name__})") from exc
    finally:
        store.close()
    return {**batch.public(), "dataset_rows": size}


# ---------------------------------------------------------------- trainings

def training_report(settings: GatewaySettings, training, job) -> Dict[str, Any]:
    """The training's status, metrics and plots, and the champion's metrics on the same
    held-out rows (from the pipeline's MLflow runs)."""
    report: Dict[str, Any] = {
        "id": training.id, "model": training.model, "status": job.status, "error": job.error,
        "job_id": job.id, "run_id": training.run_id, "experiment_id": training.experiment_id,
        "version": training.version, "metrics": {}, "champion": None, "plots": {},
        "created_at": job.public()["created_at"], "finished_at": job.public()["finished_at"]}
    if not training.run_id:
        return report
    client = _client(settings)
    by_stage = _stage_runs(client, training)
    report["stages"] = {name: {"run_id": run.info.run_id, "status": run.info.status}
                        for name, run in by_stage.items()}
    trained = by_stage.get("train_model")
    if trained is not None:
        report["metrics"] = {k: v for k, v in trained.data.metrics.items()
                             if not k.startswith("loss_")}
        plots = _registry_call("the plots", lambda: client.list_artifacts(
            trained.info.run_id, PLOTS))
        report["plots"] = {Path(p.path).stem: f"/metrics/{training.id}/plots/{Path(p.path).name}"
                           for p in plots if p.path.endswith(".png")}
        if "loss_train" in trained.data.metrics:
            report["tensorboard"] = f"runs:/{trained.info.run_id}/tensorboard"
    served = by_stage.get("inference_model")
    if served is not None:
        metrics = served.data.metrics
        report["served_metrics"] = _prefixed(metrics, "served_")
        champion = served.data.tags.get("mlplatform.champion_version")
        if champion:
            report["champion"] = {"version": champion,
                                  "metrics": _prefixed(metrics, "champion_")}
    return report


def _stage_runs(client, training) -> Dict[str, Any]:
    """The pipeline's stage runs by stage name."""
    if not training.run_id:
        return {}
    runs = _registry_call("the pipeline's runs", lambda: client.search_runs(
        [training.experiment_id], filter_string=f"tags.`mlplatform.pipeline_run` = "
                                                f"'{training.run_id}'"))
    return {run.data.tags.get("mlplatform.stage"): run for run in runs}


def _prefixed(metrics: Dict[str, float], prefix: str) -> Dict[str, float]:
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def plot(settings: GatewaySettings, training, name: str) -> bytes:
    """One PNG of the training's train_model run."""
    import mlflow

    if not name.endswith(".png") or "/" in name or name.startswith("."):
        raise NotFound(f"no plot {name!r}")
    stage = _stage_runs(_client(settings), training).get("train_model")
    if stage is None:
        raise NotFound(f"training {training.id} has no plots yet")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=stage.info.run_id, artifact_path=f"{PLOTS}/{name}", dst_path=folder,
                tracking_uri=settings.tracking_uri)
        except Exception as exc:  # MLflow says "not found" in several ways
            raise NotFound(f"training {training.id} has no plot {name!r}") from exc
        return Path(path).read_bytes()


def deployable_version(settings: GatewaySettings, training, job) -> str:
    """The training's version, if it can be deployed (409 saying why not)."""
    if job.status != "Succeeded":
        why = f": {job.error}" if job.error else " yet"
        raise Conflict(f"training {training.id} is {job.status}{why}", status=job.status)
    client = _client(settings)
    version = _registry_call(f"{training.model} version {training.version}",
                             lambda: client.get_model_version(training.model, training.version))
    status = version.tags.get("mlplatform.pipeline_status")
    if status != "passed":
        raise Conflict(f"{training.model} version {training.version} did not pass the "
                       f"pipeline's serving check (status {status or 'unknown'})")
    return version.version


# ---------------------------------------------------------------- serving

def serving_of(settings: GatewaySettings):
    from mlplatform.mlserver_configs.serving import Serving, ServingTarget

    if not settings.mlserver_repository:
        raise Unavailable("this gateway does not know MLServer's model repository "
                          "(MLPLATFORM_GATEWAY_MLSERVER_REPOSITORY; `mlplatform up` sets it)")
    return Serving(_client(settings), ServingTarget(
        settings.mlserver_url, Path(settings.mlserver_repository), settings.target))


def promote(settings: GatewaySettings, model: str, version: str) -> Dict[str, Any]:
    outcome = serving_of(settings).promote(model, version)
    return _answer(outcome)


def rollback(settings: GatewaySettings, model: str) -> Dict[str, Any]:
    _registry_call(f"model {model!r}", lambda: _client(settings).get_registered_model(model))
    outcome = serving_of(settings).rollback(model)
    if not outcome.ok and outcome.version is None:
        raise Conflict(outcome.message)
    return _answer(outcome)


def _answer(outcome) -> Dict[str, Any]:
    if not outcome.ok:
        raise UpstreamRefused(outcome.message, model=outcome.name, version=outcome.version)
    return {"model": outcome.name, "version": outcome.version, "previous": outcome.previous,
            "alias": CHAMPION, "message": outcome.message}


def versions(settings: GatewaySettings, name: str) -> List[Dict[str, Any]]:
    client = _client(settings)
    model = _registry_call(f"model {name!r}", lambda: client.get_registered_model(name))
    served = (model.tags or {}).get(served_tag(settings.target))
    aliases: Dict[str, List[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    found = _registry_call(f"the versions of {name!r}", lambda: client.search_model_versions(
        f"name = '{name}'"))
    rows = []
    for version in sorted(found, key=lambda v: int(v.version)):
        metrics = {}
        if version.run_id:
            run = _registry_call("a version's run", lambda: client.get_run(version.run_id))
            metrics = {k: v for k, v in run.data.metrics.items() if not k.startswith("loss_")}
        rows.append({
            "version": version.version, "aliases": sorted(aliases.get(version.version, [])),
            "served": version.version == served, "run_id": version.run_id,
            "created_at": _iso(version.creation_timestamp),
            "deployed_at": (version.tags or {}).get(deployed_tag(settings.target)),
            "pipeline_status": (version.tags or {}).get("mlplatform.pipeline_status"),
            "metrics": metrics})
    return rows


def _iso(milliseconds: Optional[int]) -> Optional[str]:
    from datetime import datetime, timezone

    if not milliseconds:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc).isoformat()
