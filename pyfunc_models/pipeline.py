"""The training pipeline (seed 003): ``extract_data`` -> ``train_model`` -> ``inference_model``.

Each stage is an MLflow run nested under one parent run (``pipeline-<model>``),
in the model's experiment:

* ``extract_data`` reads the model's dataset from the feature store (seeding it
  on first use), splits it 80/20 (stratified, fixed seed) and logs both parts as
  MLflow dataset inputs (digest, rows) and as files, with the batches they hold;
* ``train_model`` fits on the 80 %, logs metrics on the held-out 20 % (ROC AUC,
  PR AUC, F1, precision, recall, log loss; per class and macro for multiclass),
  plots (ROC, precision-recall, confusion matrix, feature importance, learning
  curve) and, for gradient-trained models, per-iteration losses as TensorBoard
  event files; then registers the model as a new version with alias
  ``challenger`` -- never ``champion``: serving changes only with a deploy;
* ``inference_model`` loads the *registered* artifact and scores the held-out
  rows with the very request MLServer hands it (a V2 table request), logs the
  metrics of those answers and of the current champion on the same rows, and
  fails the pipeline if the served answers differ from the trained model's: a
  model that trains but does not serve never stays ``challenger``.

A stage run alone (``--stage train_model``) takes its input from the latest run
of the stage before it.
"""
from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .catalog import ModelSpec, get_model_spec
from .conventions import CHALLENGER, CHAMPION, PROBABILITY_PREFIX
from .feature_store import Dataset, FeatureStore, dataset_for
from .reports import classification_metrics, headline, plots
from .training import Fitted, Trainer, trainer_for

STAGES = ("extract_data", "train_model", "inference_model")
STAGE_TAG = "mlplatform.stage"
MODEL_TAG = "mlplatform.model"
PIPELINE_TAG = "mlplatform.pipeline_run"   # on stage runs and model versions: the parent
DATA_RUN_TAG = "mlplatform.data_run"       # on model versions: the extract_data run
VERSION_TAG = "mlplatform.version"         # on train_model runs: the version registered
STATUS_TAG = "mlplatform.pipeline_status"  # on model versions: passed | failed
TEST_SHARE = 0.2
# The registered artifact (ONNX, float32 inside) and the trained estimator (float64)
# agree to ~1e-6 on probabilities; a difference beyond this is a serving defect.
SERVED_TOLERANCE = 1e-3


class PipelineError(RuntimeError):
    """A stage failed; the message says which and why, ``result`` how far it got."""

    result: Optional["PipelineResult"] = None


@dataclass
class PipelineResult:
    model: str
    parent_run_id: str
    experiment_id: str
    stages: Dict[str, str] = field(default_factory=dict)   # stage -> run id
    version: Optional[str] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    served_metrics: Dict[str, float] = field(default_factory=dict)
    champion_version: Optional[str] = None
    champion_metrics: Dict[str, float] = field(default_factory=dict)


@dataclass
class _Context:
    model: str
    trainer: Trainer
    dataset: Dataset
    store_url: str
    tracking_uri: str
    params: Dict[str, Any]
    result: PipelineResult
    log: Callable[[str], None]
    train: Optional[pd.DataFrame] = None
    test: Optional[pd.DataFrame] = None
    data_run: Optional[str] = None
    fitted: Optional[Fitted] = None


def run_pipeline(model: str, tracking_uri: str, store_url: str,
                 stages: Sequence[str] = STAGES, params: Optional[Dict[str, Any]] = None,
                 log: Callable[[str], None] = print,
                 on_start: Optional[Callable[[PipelineResult], None]] = None) -> PipelineResult:
    """Run ``stages`` (in pipeline order) under one parent run; raises ``PipelineError``
    (its ``result`` says how far it got).  ``on_start`` hears the parent run's id first."""
    import mlflow

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    trainer, dataset = trainer_for(model), dataset_for(model)
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(model).experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"pipeline-{model}",
                          tags={MODEL_TAG: model, STAGE_TAG: "pipeline"}) as parent:
        result = PipelineResult(model, parent.info.run_id, experiment_id)
        context = _Context(model, trainer, dataset, store_url, tracking_uri, dict(params or {}),
                           result, log)
        mlflow.log_params({"stages": ",".join(s for s in STAGES if s in stages),
                           **{f"param_{k}": v for k, v in context.params.items()}})
        if on_start:
            on_start(result)
        for stage in STAGES:
            if stage not in stages:
                continue
            log(f"{model}: {stage} ...")
            try:
                STAGE_FUNCTIONS[stage](context)
            except Exception as exc:
                failed = exc if isinstance(exc, PipelineError) else PipelineError(
                    f"{stage} failed: {type(exc).__name__}: {exc}")
                failed.result = result
                raise failed from exc
        if result.version:
            mlflow.set_tag(VERSION_TAG, result.version)
    return result


# ---------------------------------------------------------------- extract_data

def extract_data(context: _Context) -> None:
    import mlflow
    from sklearn.model_selection import train_test_split

    dataset = context.dataset
    store = FeatureStore(context.store_url)
    try:
        seeded = store.ensure_seeded(dataset)
        if seeded:
            context.log(f"  seeded dataset {dataset.name!r} with {seeded.rows} rows")
        snapshot = store.snapshot(dataset)
    finally:
        store.close()
    frame = snapshot.frame
    seed = int(context.params.get("seed", 42))
    labels = frame[dataset.label].astype(str)
    stratify = labels if labels.value_counts().min() >= 2 else None
    train, test = train_test_split(frame, test_size=TEST_SHARE, random_state=seed,
                                   stratify=stratify)
    with mlflow.start_run(run_name="extract_data", nested=True, tags=_tags(context, "extract_data")
                          ) as run:
        for part, name in ((train, "training"), (test, "evaluation")):
            with warnings.catch_warnings():  # MLflow's hint about integer columns and NaN
                warnings.simplefilter("ignore", UserWarning)
                mlflow.log_input(mlflow.data.from_pandas(
                    part.drop(columns=["batch_id"]), name=f"{dataset.name}-{name}",
                    targets=dataset.label), context=name)
        batches = [b.id for b in snapshot.batches]
        mlflow.log_params({"dataset": dataset.name, "rows": len(frame), "train_rows": len(train),
                           "test_rows": len(test), "batches": _ids(batches),
                           "seed": seed, "feature_store": _safe_url(context.store_url)})
        with tempfile.TemporaryDirectory() as folder:
            train.to_parquet(Path(folder) / "train.parquet")
            test.to_parquet(Path(folder) / "test.parquet")
            (Path(folder) / "batches.json").write_text(json.dumps(
                [b.public() for b in snapshot.batches], indent=1))
            mlflow.log_artifacts(folder, "data")
    context.train, context.test, context.data_run = train, test, run.info.run_id
    context.result.stages["extract_data"] = run.info.run_id
    context.log(f"  {len(frame)} rows from {len(batches)} batch(es): {len(train)} to train, "
                f"{len(test)} held out")


# ---------------------------------------------------------------- train_model

def train_model(context: _Context) -> None:
    import mlflow

    from .registration import register

    if context.train is None:
        _load_data(context)
    catalog_spec = get_model_spec(context.model)
    features_test = context.test.drop(columns=["batch_id"])
    truth = features_test[context.dataset.label].tolist()

    def build(build_context):
        fitted = context.trainer.fit(context.train.drop(columns=["batch_id"]), context.params)
        probabilities = context.trainer.probabilities(fitted, features_test)
        metrics = classification_metrics(truth, probabilities, fitted.classes, fitted.threshold)
        learning = _learning_curve(context, fitted, metrics, features_test, truth)
        with tempfile.TemporaryDirectory() as folder:
            plots(Path(folder), truth, probabilities, fitted.classes, fitted.threshold,
                  fitted.importances, learning)
            mlflow.log_artifacts(folder, "plots")
        _loss_curves(fitted)
        bundle = context.trainer.bundle(build_context, fitted)
        bundle.metrics = metrics
        bundle.params = {**fitted.params, "train_rows": len(context.train)}
        context.fitted = fitted
        context.result.metrics = metrics
        return bundle

    spec = ModelSpec(context.model, catalog_spec.description, build, catalog_spec.requirements)
    registration = register(
        spec, context.tracking_uri, alias=CHALLENGER, experiment=context.model, force=True,
        run_name="train_model", run_tags=_tags(context, "train_model"),
        extra_version_tags={PIPELINE_TAG: context.result.parent_run_id,
                            DATA_RUN_TAG: context.data_run or ""})
    client = mlflow.MlflowClient(context.tracking_uri)
    client.set_tag(registration.run_id, VERSION_TAG, registration.version)
    context.result.version = registration.version
    context.result.stages["train_model"] = registration.run_id
    key = headline(context.result.metrics)
    context.log(f"  registered {context.model} version {registration.version} as "
                f"{CHALLENGER}; {key} {context.result.metrics[key]:.4f} on held-out rows")


def _learning_curve(context: _Context, fitted: Fitted, metrics: Dict[str, float],
                    features_test: pd.DataFrame, truth: List[Any]):
    """(training rows, score on them, score held out) for 25 %, 50 % and all of the
    training rows; ``learning_curve=0`` skips the two extra fits."""
    if not int(context.params.get("learning_curve", 1)):
        return []
    train = context.train.drop(columns=["batch_id"])
    key = headline(metrics)
    points = []
    for share in (0.25, 0.5, 1.0):
        part = train if share == 1.0 else train.sample(frac=share, random_state=1)
        model = fitted if share == 1.0 else context.trainer.fit(part, context.params)
        on_train = classification_metrics(
            part[context.dataset.label].tolist(), context.trainer.probabilities(model, part),
            model.classes, model.threshold)[key]
        held_out = metrics[key] if share == 1.0 else classification_metrics(
            truth, context.trainer.probabilities(model, features_test), model.classes,
            model.threshold)[key]
        points.append((len(part), on_train, held_out))
    return points


def _loss_curves(fitted: Fitted) -> None:
    """Per-iteration losses as MLflow metric steps and as TensorBoard event files
    (``tensorboard --logdir <downloaded tensorboard folder>``)."""
    import mlflow

    if not fitted.loss_curves:
        return
    from tensorboardX import SummaryWriter

    with tempfile.TemporaryDirectory() as folder:
        writer = SummaryWriter(logdir=folder)
        for name, values in fitted.loss_curves.items():
            for step, value in enumerate(values):
                writer.add_scalar(f"loss/{name}", value, step)
            for step, value in enumerate(values):
                mlflow.log_metric(f"loss_{name}", value, step=step)
        writer.close()
        mlflow.log_artifacts(folder, "tensorboard")


# ---------------------------------------------------------------- inference_model

def inference_model(context: _Context) -> None:
    import mlflow

    client = mlflow.MlflowClient(context.tracking_uri)
    if context.result.version is None:
        _load_training(context, client)
    if context.test is None:
        _load_data(context)
    version = context.result.version
    rows = context.test.drop(columns=["batch_id"])
    truth = rows[context.dataset.label].tolist()
    features = rows.drop(columns=[context.dataset.label])
    with mlflow.start_run(run_name="inference_model", nested=True,
                          tags=_tags(context, "inference_model")) as run:
        context.result.stages["inference_model"] = run.info.run_id
        mlflow.log_param("version", version)
        try:
            served, classes, threshold = _served_probabilities(context.model, version, features,
                                                               context.tracking_uri)
            metrics = classification_metrics(truth, served, classes, threshold)
            _agrees_with_training(context, features, served)
        except Exception as exc:
            client.set_model_version_tag(context.model, version, STATUS_TAG, "failed")
            _drop_alias(client, context.model, CHALLENGER, version)
            raise PipelineError(f"{context.model} version {version} trains but does not serve: "
                                f"{exc}") from exc
        mlflow.log_metrics({f"served_{k}": v for k, v in metrics.items()})
        context.result.served_metrics = metrics
        champion = _alias_version(client, context.model, CHAMPION)
        if champion is not None and champion != version:
            try:
                probabilities, classes, threshold = _served_probabilities(
                    context.model, champion, features, context.tracking_uri)
                context.result.champion_metrics = classification_metrics(
                    truth, probabilities, classes, threshold)
                context.result.champion_version = champion
                mlflow.log_metrics({f"champion_{k}": v for k, v in
                                    context.result.champion_metrics.items()})
                mlflow.set_tag("mlplatform.champion_version", champion)
            except Exception as exc:  # an old champion that no longer loads: say so, go on
                context.log(f"  the champion (version {champion}) could not be scored: {exc}")
        client.set_model_version_tag(context.model, version, STATUS_TAG, "passed")
    key = headline(metrics)
    versus = (f"; champion v{context.result.champion_version}: "
              f"{context.result.champion_metrics.get(key, float('nan')):.4f}"
              if context.result.champion_version else "")
    context.log(f"  served version {version}: {key} {metrics[key]:.4f}{versus}")


def _served_probabilities(model: str, version: str, features: pd.DataFrame,
                          tracking_uri: str):
    """The registered artifact's answers to the V2 table request MLServer would pass it,
    as (probabilities, classes, the binary threshold it decides with)."""
    import mlflow
    from mlserver.types import InferenceRequest

    from .table import encode_frame
    from .wire import TABLE

    mlflow.set_tracking_uri(tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{model}/{version}")
    request = InferenceRequest.model_validate({
        "parameters": {"content_type": TABLE},
        "inputs": [column.as_json() for column in encode_frame(features)]})
    columns = loaded.predict(request)
    per_class = sorted(k for k in columns if k.startswith(PROBABILITY_PREFIX))
    if per_class:
        classes = [k[len(PROBABILITY_PREFIX):] for k in per_class]
        return (np.column_stack([np.asarray(columns[k], dtype=float) for k in per_class]),
                classes, None)
    positive = np.asarray(columns["fraud_probability"], dtype=float)
    threshold = float(np.asarray(columns["threshold"], dtype=float)[0])
    return np.column_stack([1 - positive, positive]), [0, 1], threshold


def _agrees_with_training(context: _Context, features: pd.DataFrame, served: np.ndarray) -> None:
    if context.fitted is None:  # the stage runs alone: nothing trained in this process
        return
    trained = context.trainer.probabilities(context.fitted, features)
    # The served answer rounds probabilities to 6 places; ONNX computes in float32.
    worst = float(np.max(np.abs(np.sort(trained, axis=1) - np.sort(served, axis=1))))
    if worst > SERVED_TOLERANCE:
        raise PipelineError(f"its answers differ from the trained model's by up to {worst:.4g}")


# ---------------------------------------------------------------- helpers

def _tags(context: _Context, stage: str) -> Dict[str, str]:
    return {STAGE_TAG: stage, MODEL_TAG: context.model,
            PIPELINE_TAG: context.result.parent_run_id}


def _latest_stage_run(context: _Context, stage: str):
    import mlflow

    runs = mlflow.MlflowClient(context.tracking_uri).search_runs(
        [context.result.experiment_id],
        filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{MODEL_TAG}` = "
                      f"'{context.model}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise PipelineError(f"no finished {stage} run of {context.model}: run the pipeline "
                            f"from that stage (mlplatform pipeline {context.model})")
    return runs[0]


def _load_data(context: _Context) -> None:
    run = _latest_stage_run(context, "extract_data")
    _load_data_of(context, run.info.run_id)
    context.log(f"  data from extract_data run {run.info.run_id}")


def _load_training(context: _Context, client) -> None:
    run = _latest_stage_run(context, "train_model")
    context.result.version = run.data.tags.get(VERSION_TAG)
    if not context.result.version:
        raise PipelineError(f"train_model run {run.info.run_id} registered no version")
    data_run = client.get_model_version(context.model, context.result.version).tags.get(
        DATA_RUN_TAG)
    if data_run:
        _load_data_of(context, data_run)
    context.log(f"  version {context.result.version} from train_model run {run.info.run_id}")


def _load_data_of(context: _Context, run_id: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data",
                                                   dst_path=folder,
                                                   tracking_uri=context.tracking_uri)
        context.train = pd.read_parquet(Path(path) / "train.parquet")
        context.test = pd.read_parquet(Path(path) / "test.parquet")
    context.data_run = run_id


def _alias_version(client, model: str, alias: str) -> Optional[str]:
    from .registration import current_version

    found = current_version(client, model, alias)
    return found.version if found else None


def _drop_alias(client, model: str, alias: str, version: str) -> None:
    if _alias_version(client, model, alias) == version:
        client.delete_registered_model_alias(model, alias)


def _ids(batches: List[int]) -> str:
    text = ",".join(map(str, batches))
    return text if len(text) <= 500 else f"{batches[0]}..{batches[-1]} ({len(batches)} batches)"


def _safe_url(url: str) -> str:
    """The store's URL without a password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


STAGE_FUNCTIONS: Dict[str, Callable[[_Context], None]] = {
    "extract_data": extract_data, "train_model": train_model, "inference_model": inference_model}
