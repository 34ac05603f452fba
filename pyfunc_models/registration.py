"""Log a catalog model to MLflow, register a version and point an alias at it.

What lands in MLflow for each registration:

* a run (experiment named after the model) with the training params and metrics;
* the pyfunc model, logged **without a signature** (``signature=False``): with a
  signature MLServer would enforce it and answer the guide's wire format with
  "Model is missing inputs" (HTTP 500).  The plain input example is still saved
  (``input_example.json``), and the V2 request that carries it sits beside it as
  the model artifact ``example_request.json``;
* a new registered model version, tagged with the code fingerprint, the wire
  formats and the sha256 manifest of every artifact file (``integrity.py``;
  signed when ``MLPLATFORM_SIGNING_KEY_FILE`` names a key), and an alias pointed
  at it: ``champion`` for a model's first
  version, ``challenger`` once a champion exists (unless an alias is named).
  Registering never changes what is served by itself: ``mlserver_configs.serving``
  (``mlplatform deploy``, or the gateway following a moved ``champion``) does
  that, and only once the new version answers.

The model's classes come from the *installed* ``pyfunc_models`` (the platform
runtime, like ``mlserver_mlflow``), not from a copy logged with ``code_paths``:
MLflow only prepends each model's code folder to ``sys.path``, so in one
MLServer process the first model loaded would decide which copy every later
model runs against.  A data scientist's own code (an imported folder) does
travel inside the model, as an artifact.

Anything that fails after the version exists removes that version again, so a
failed ``register`` never leaves a half-registered model behind.
"""
from __future__ import annotations

import base64
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .catalog import BuildContext, ModelSpec, get_model_spec
from .integrity import (
    MANIFEST_TAG,
    SIGNATURE_TAG,
    SIGNING_KEY_ENV,
    IntegrityError,
    Key,
    key_from_env,
    manifest_of,
    manifest_tag,
)
from .profile import PROFILE_ARTIFACT, reference_profile
from .conventions import CHALLENGER, CHAMPION, FINGERPRINT_TAG, version_tags
from .wire import image_request, json_request

DEFAULT_ALIAS = CHAMPION
EXAMPLE_REQUEST_ARTIFACT = "example_request"


class RegistrationError(RuntimeError):
    """Registration failed; nothing half-registered was left behind."""


@dataclass
class Registration:
    name: str
    version: str
    alias: str
    run_id: str
    artifact_uri: str
    trained: bool
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def alias_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def current_version(client: MlflowClient, name: str, alias: str) -> Optional[ModelVersion]:
    """The version ``alias`` points at, or None if the model or alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def artifact_location(client: MlflowClient, version: ModelVersion) -> str:
    """Where the version's files are stored (``mlflow-artifacts:/...`` behind a proxy)."""
    return client.get_model_version_download_uri(version.name, version.version)


def register(
    model: Union[str, ModelSpec],
    tracking_uri: str,
    *,
    alias: Optional[str] = None,
    experiment: Optional[str] = None,
    force: bool = False,
    run_name: Optional[str] = None,
    run_tags: Optional[Dict[str, str]] = None,
    extra_version_tags: Optional[Dict[str, str]] = None,
) -> Registration:
    """Train (if the code changed or ``force``), log and register ``model``.

    ``model`` is a catalog name, or a ``ModelSpec`` built elsewhere (an
    imported folder).  Without ``alias`` the new version becomes ``champion``
    if the model has none yet, else ``challenger``.  Inside an active run (the
    training pipeline's parent run) the training run is nested under it.
    """
    spec = get_model_spec(model) if isinstance(model, str) else model
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        signer = key_from_env(SIGNING_KEY_ENV)  # a broken key fails before any training
    except (IntegrityError, OSError) as exc:
        raise RegistrationError(f"{SIGNING_KEY_ENV}: {exc}") from None
    fingerprint = spec.fingerprint()

    if not force:
        for candidate in ([alias] if alias else [CHAMPION, CHALLENGER]):
            existing = current_version(client, spec.name, candidate)
            if existing is not None and existing.tags.get(FINGERPRINT_TAG) == fingerprint:
                run = client.get_run(existing.run_id)
                return Registration(
                    spec.name, existing.version, candidate, existing.run_id,
                    artifact_location(client, existing), trained=False,
                    metrics=dict(run.data.metrics))
    if alias is None:
        alias = CHALLENGER if current_version(client, spec.name, CHAMPION) else CHAMPION

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment or spec.name).experiment_id
    with tempfile.TemporaryDirectory(prefix=f"mlplatform-{spec.name}-") as workdir:
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or f"{spec.name}-train",
                              nested=mlflow.active_run() is not None, tags=run_tags) as run:
            context = BuildContext(Path(workdir), spec.name, experiment or spec.name, run.info.run_id)
            model_uri, model_id, bundle_metrics, formats = _log(spec, context, fingerprint)
        manifest = _manifest(model_uri, Path(workdir) / "uploaded")
        tags = {FINGERPRINT_TAG: fingerprint, **formats, **(extra_version_tags or {}),
                MANIFEST_TAG: manifest}
        version = _create_version(client, spec.name, model_uri, run.info.run_id, model_id,
                                  tags, alias, signer)
    return Registration(
        spec.name, version.version, alias, run.info.run_id,
        artifact_location(client, version), trained=True, metrics=bundle_metrics,
    )


def _log(spec: ModelSpec, context: BuildContext, fingerprint: str):
    bundle = spec.build(context)
    workdir = context.workdir
    mlflow.log_params(bundle.params)
    mlflow.log_metrics(bundle.metrics)

    example = bundle.input_example
    artifacts = dict(bundle.artifacts)
    if example is not None:
        if isinstance(example, bytes):  # an image model: V2 carries it as base64 text
            request = image_request(example, spec.name)
            example = base64.b64encode(example).decode("ascii")
        else:
            request = json_request(example, spec.name)
        example_request = workdir / "example_request.json"
        example_request.write_text(json.dumps(request, indent=2))
        artifacts[EXAMPLE_REQUEST_ARTIFACT] = str(example_request)
    if bundle.reference is not None:  # beside the model: artifacts/reference_profile.json
        profile = workdir / PROFILE_ARTIFACT
        profile.write_text(json.dumps(reference_profile(bundle.reference)))
        artifacts[PROFILE_ARTIFACT.rsplit(".", 1)[0]] = str(profile)

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=bundle.python_model,
        artifacts=artifacts,
        pip_requirements=spec.pip_requirements(),
        input_example=example,
        signature=False,
        model_config=bundle.model_config or None,
        metadata={"mlplatform": {"model": spec.name, "fingerprint": fingerprint}},
    )
    if info.signature is not None:  # would make MLServer reject the codec's wire format
        raise RegistrationError(f"{spec.name}: MLflow attached a signature ({info.signature})")
    # What a V2 client must send and expect; the gateway reads these tags.
    formats = version_tags(bundle.python_model.input_format, bundle.python_model.output_format,
                           bundle.python_model.accepts_table, bundle.python_model.accepted_params)
    return info.model_uri, info.model_id, bundle.metrics, formats


def _manifest(model_uri: str, folder: Path) -> str:
    """The manifest of the files as the artifact store holds them (read back right after
    the upload: what a server will download is what is hashed)."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder))
    tag = manifest_tag(manifest_of(Path(local)))
    if len(tag) > 100_000:  # MLflow's limit for a model version tag's value
        raise RegistrationError(f"the model has too many files for its manifest ({len(tag)} "
                                "characters; at most 100,000): put them in fewer files")
    return tag


def _create_version(client: MlflowClient, name: str, model_uri: str, run_id: str,
                    model_id: str, tags: Dict[str, str], alias: str,
                    signer: Optional[Key] = None) -> ModelVersion:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name, model_uri, run_id=run_id, tags=tags, model_id=model_id,
    )
    try:
        if signer is not None:  # signed before any alias can make it servable
            client.set_model_version_tag(name, version.version, SIGNATURE_TAG, signer.sign(
                name, version.version, tags[MANIFEST_TAG]))
        client.set_registered_model_alias(name, alias, version.version)
        return client.get_model_version(name, version.version)
    except Exception:
        client.delete_model_version(name, version.version)
        raise
