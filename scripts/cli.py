"""``mlplatform``: run the local stack, register models, configure and deploy MLServer."""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import click

from .settings import PlatformSettings, load_settings

# An unreachable tracking server should fail in seconds, not after MLflow's long retry loop.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
# One line per stage says what happened; MLflow's download bars would drown it.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _friendly_errors(command: Callable) -> Callable:
    """Known failures become one ``Error: ...`` line and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException
        from pydantic import ValidationError

        from mlplatform.mlserver_configs.generator import ConfigError
        from mlplatform.pyfunc_models.conventions import ModelReferenceError
        from mlplatform.pyfunc_models.registration import RegistrationError

        from .processes import StartupError
        from .s3 import S3Unavailable
        from .stack import StackError

        try:
            return command(*args, **kwargs)
        except (StackError, StartupError, S3Unavailable, ConfigError, RegistrationError,
                ModelReferenceError) as exc:
            raise click.ClickException(str(exc)) from None
        except MlflowException as exc:
            raise click.ClickException(f"MLflow: {exc.message}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise click.ClickException(f"invalid setting: {problems}") from None

    return wrapper


def _settings(ctx: click.Context, **overrides: Any) -> PlatformSettings:
    return load_settings(**ctx.obj, **overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the stack's database, artifacts, logs and state "
                   "[env MLPLATFORM_STATE_DIR; default ./.mlplatform].")
@click.version_option(package_name="mlplatform")
@click.pass_context
def main(ctx: click.Context, state_dir: Optional[Path]) -> None:
    """Train, register, configure and serve MLflow models with MLServer (V2 protocol).

    Settings come from flags, then MLPLATFORM_* environment variables, then a
    .env file in the current folder. Typical session:

      mlplatform up; mlplatform register echo; mlplatform deploy; mlplatform status
    """
    ctx.obj = {"state_dir": state_dir}


# ---------------------------------------------------------------- stack


def _options(*options: Callable) -> Callable[[Callable], Callable]:
    """Several click options as one decorator, in the order given."""
    def apply(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func
    return apply


_mlserver_options = _options(  # shared by `up` and `mlserver-config`
    click.option("--host", help="Interface to bind [127.0.0.1; 0.0.0.0 for other machines]."),
    click.option("--mlserver-http-port", type=int, help="MLServer HTTP port [8000]."),
    click.option("--mlserver-grpc-port", type=int, help="MLServer gRPC port [8001]."),
    click.option("--mlserver-metrics-port", type=int, help="MLServer metrics port [8002]."),
    click.option("--parallel-workers", type=int,
                 help="MLServer inference worker processes [0; see docs/benchmarks.md]."),
)


@main.command()
@_mlserver_options
@click.option("--mlflow-port", type=int, help="MLflow tracking server port [5000].")
@click.option("--gateway-port", type=int, help="REST gateway port [8080].")
@click.option("--s3-endpoint-url", help="S3 endpoint (MinIO) for artifacts; default: local folder.")
@click.option("--s3-bucket", help="Bucket for artifacts [mlplatform].")
@click.option("--jupyterhub", "with_jupyterhub", is_flag=True,
              help="Also start JupyterHub (needs MLPLATFORM_JUPYTERHUB_PASSWORD; "
                   "infra/jupyterhub/README.md).")
@click.option("--jupyterhub-port", type=int, help="JupyterHub port [6000].")
@click.option("--jupyterhub-public", is_flag=True, default=None,
              help="Let other machines reach the hub (bind 0.0.0.0; default 127.0.0.1).")
@click.option("--monitoring", "with_monitoring", is_flag=True,
              help="Also start Prometheus, scraping the gateway and MLServer "
                   "(docs/monitoring.md).")
@click.option("--prometheus-port", type=int, help="Prometheus port [9090].")
@click.pass_context
@_friendly_errors
def up(ctx: click.Context, with_jupyterhub: bool, with_monitoring: bool,
       jupyterhub_public: Optional[bool], **flags: Any) -> None:
    """Start MLflow, MLServer and the gateway (and JupyterHub, Prometheus), or reuse
    healthy ones."""
    from .stack import up as start_stack

    if jupyterhub_public:
        flags["jupyterhub_ip"] = "0.0.0.0"
    settings = _settings(ctx, **flags)
    state = start_stack(settings, report=click.echo, with_jupyterhub=with_jupyterhub,
                        with_monitoring=with_monitoring)
    mlflow, mlserver = state.components["mlflow"], state.components["mlserver"]
    gateway = state.components["gateway"]
    click.echo(f"\nMLflow UI:        {mlflow.url}\nMLServer V2 docs: {mlserver.url}/v2/docs\n"
               f"Gateway:          {gateway.url} (API docs {gateway.url}/docs)\n"
               f"State and logs:   {settings.state_path}")
    if "jupyterhub" in state.components:
        click.echo(f"JupyterHub:       {state.components['jupyterhub'].url}")
    if "prometheus" in state.components:
        click.echo(f"Prometheus:       {state.components['prometheus'].url}")


@main.command()
@click.argument("components", nargs=-1,
                type=click.Choice(["prometheus", "jupyterhub", "gateway", "mlserver", "mlflow",
                                   "minio"]))
@click.pass_context
@_friendly_errors
def down(ctx: click.Context, components: tuple) -> None:
    """Stop every process that `mlplatform up` (or `minio up`) started, or only COMPONENTS
    (e.g. `mlplatform down jupyterhub`)."""
    from .stack import down as stop_stack

    stop_stack(_settings(ctx), report=click.echo, only=components)


@main.command()
@click.pass_context
@_friendly_errors
def status(ctx: click.Context) -> None:
    """Show each component's process and health (exit code 1 if any is not healthy)."""
    from .stack import status as stack_status

    rows = stack_status(_settings(ctx))
    for row in rows:
        pid = row.pid if row.pid is not None else "-"
        click.echo(f"{row.name:<10} {row.state:<10} pid {pid:<8} {row.url or '-':<24} {row.detail}")
    if any(row.state != "healthy" for row in rows):
        ctx.exit(1)


@main.command()
@click.argument("component", required=False,
                type=click.Choice(["mlflow", "mlserver", "gateway", "minio", "jupyterhub",
                                   "prometheus"]))
@click.option("-n", "--lines", default=40, show_default=True, help="Lines to show from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.pass_context
@_friendly_errors
def logs(ctx: click.Context, component: Optional[str], lines: int, follow: bool) -> None:
    """Print the end of a component's log (all components if none is named)."""
    from .processes import log_tail
    from .stack import StackError

    folder = _settings(ctx).state_path / "logs"
    names = [component] if component else ["minio", "mlflow", "mlserver", "gateway",
                                           "jupyterhub", "prometheus"]
    paths = [folder / f"{name}.log" for name in names if (folder / f"{name}.log").exists()]
    if not paths:
        raise StackError(f"no logs in {folder}; has `mlplatform up` run with this state folder?")
    for path in paths:
        if len(paths) > 1:
            click.echo(f"==> {path} <==")
        click.echo(log_tail(str(path), lines))
    if follow:
        _follow(paths)


def _follow(paths) -> None:
    handles = [open(path, "r", errors="replace") for path in paths]
    for handle in handles:
        handle.seek(0, os.SEEK_END)
    try:
        while True:
            for handle in handles:
                chunk = handle.read()
                if chunk:
                    click.echo(chunk, nl=False)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for handle in handles:
            handle.close()


# ---------------------------------------------------------------- models


@main.command("models")
def list_models() -> None:
    """List the models `mlplatform register` can train and register."""
    from mlplatform.pyfunc_models.catalog import model_specs

    for spec in model_specs():
        click.echo(f"{spec.name:<12} {spec.description}")


_registration_options = _options(  # shared by `register` and `import`
    click.option("--alias", help="Alias to point at the new version [champion for a model's "
                 "first version, else challenger]. Serving changes only through `deploy`."),
    click.option("--experiment", help="MLflow experiment [the model's name]."),
    click.option("--force", is_flag=True, help="Register a new version even if nothing changed."),
    click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                 help="MLflow tracking server [the running stack's]."),
)


@main.command()
@click.argument("models", nargs=-1, metavar="MODEL...")
@click.option("--all", "every", is_flag=True, help="Every model of `mlplatform models`.")
@_registration_options
@click.pass_context
@_friendly_errors
def register(ctx: click.Context, models, every: bool, alias: Optional[str],
             experiment: Optional[str], force: bool, tracking_uri: Optional[str]) -> None:
    """Train each MODEL if needed, log it to MLflow, register a version, set the alias.

    Skips training when the alias already points at a version built from the
    same code and library versions (use --force to retrain anyway).
    """
    from mlplatform.pyfunc_models.catalog import get_model_spec, model_specs

    from .stack import StackError

    settings = _settings(ctx)
    if every:
        specs = model_specs()
    elif not models:
        raise StackError("name the model(s) to register, or pass --all (see `mlplatform models`)")
    else:
        try:
            specs = [get_model_spec(model) for model in models]
        except KeyError as exc:
            raise StackError(exc.args[0]) from None
    for spec in specs:
        _register_and_report(settings, spec, tracking_uri, experiment, force, alias)


@main.command("import")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--name", help="Registered model name [the folder's name].")
@click.option("--example", type=click.Path(dir_okay=False, path_type=Path),
              help="A JSON sample input [the folder's example.json / schema.json, if any].")
@_registration_options
@click.pass_context
@_friendly_errors
def import_folder(ctx: click.Context, folder: Path, name: Optional[str], example: Optional[Path],
                  alias: Optional[str], experiment: Optional[str], force: bool,
                  tracking_uri: Optional[str]) -> None:
    """Register a folder of plain Python (MMF mmf.yml or Neomaril neomaril.yml) as a model.

    The descriptor is validated, each JSON target is run on the sample input
    (--example, or the folder's example.json / schema.json) first, and nothing is
    registered if that fails. Without a sample the model is registered without a
    sample run (and without an input example), and import says so.
    JsonToJson / Sync targets are then served by `mlplatform deploy`; FileToFile /
    Async / FileToArtifact targets run with `mlplatform run`.
    """
    from mlplatform.pyfunc_models.imported.descriptors import DescriptorError
    from mlplatform.pyfunc_models.imported.importer import import_folder as describe_folder

    from .stack import StackError

    settings = _settings(ctx)
    try:
        spec, descriptor = describe_folder(folder, name, example)
    except DescriptorError as exc:
        raise StackError(str(exc)) from None
    if descriptor.sample is None and descriptor.json_targets:
        click.echo(f"{folder}: no sample input (example.json, schema.json or --example FILE): "
                   "registering without a sample run")
    _register_and_report(settings, spec, tracking_uri, experiment, force, alias)
    for target in descriptor.targets:
        if target.task_type == "JsonToJson":
            how = (f"V2 after `mlplatform deploy`: POST /v2/models/{spec.name}/infer"
                   + (f' with "parameters": {{"target": "{target.name}"}}'
                      if target is not descriptor.json_targets[0] else " (default target)"))
        else:
            how = f"mlplatform run {spec.name} '{target.name}' <file>"
        click.echo(f"  target {target.name!r} ({target.task_type}): {how}")


@main.command()
@click.argument("model", metavar="NAME[@ALIAS|/VERSION]")
@click.argument("target")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the output file (FileToFile / Async).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server.")
@click.pass_context
@_friendly_errors
def run(ctx: click.Context, model: str, target: str, file: Path, output: Path,
        tracking_uri: Optional[str]) -> None:
    """Run TARGET of an imported MODEL on FILE, with the registered code and artifacts.

    \b
    FileToFile / Async: writes the output file into --output and prints its path.
    FileToArtifact:     retrains; the updated artifacts become a new version
                        (alias challenger; `mlplatform deploy --model NAME@challenger`
                        serves it).
    JsonToJson / Sync:  FILE holds the JSON input; prints the JSON answer.
    """
    import json
    import tempfile

    from mlplatform.mlserver_configs.generator import ModelReference
    from mlplatform.pyfunc_models.errors import ModelInputError
    from mlplatform.pyfunc_models.imported.descriptors import DescriptorError
    from mlplatform.pyfunc_models.imported.runner import run_target

    from .stack import StackError, StackState
    from .stack import tracking_uri as resolve_tracking

    settings = _settings(ctx)
    reference = ModelReference.parse(model, settings.alias)
    uri = resolve_tracking(settings, tracking_uri)
    wanted = (f"models:/{reference.name}/{reference.version}" if reference.version
              else f"models:/{reference.name}@{reference.alias}")
    with tempfile.TemporaryDirectory(prefix="mlplatform-run-") as workdir:
        try:
            outcome = run_target(wanted, reference.name, target, file, output.resolve(), uri,
                                 Path(workdir))
        except (ModelInputError, DescriptorError) as exc:
            raise StackError(str(exc)) from None
    if outcome.task_type == "JsonToJson":
        click.echo(json.dumps(outcome.answer, ensure_ascii=False))
    elif outcome.task_type == "FileToFile":
        click.echo(f"{outcome.target}: wrote {outcome.output}")
    else:
        mlflow_process = StackState(settings.state_path).components.get("mlflow")
        destination = mlflow_process.info.get("artifacts_destination", "") if mlflow_process else ""
        click.echo(f"{outcome.target}: artifacts updated from {file}; registered them")
        _report_registration(outcome.registration, destination)


@main.command()
@click.argument("model")
@click.option("--stage", "stages", multiple=True,
              type=click.Choice(["extract_data", "train_model", "inference_model"]),
              help="Run only this stage (repeatable); its input is the latest run of the stage "
                   "before it. Default: all three.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Training parameter (e.g. n_estimators=100, learning_curve=0).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server.")
@click.pass_context
@_friendly_errors
def pipeline(ctx: click.Context, model: str, stages, params, tracking_uri: Optional[str]) -> None:
    """Retrain MODEL on the feature store: extract_data -> train_model -> inference_model.

    \b
    Each stage is an MLflow run nested under one parent run. The new version is
    registered with alias challenger (never champion): compare it, then
    `mlplatform deploy --model MODEL@challenger` serves it.
    """
    from mlplatform.pyfunc_models.pipeline import STAGES, PipelineError, run_pipeline

    from .stack import StackError
    from .stack import tracking_uri as resolve_tracking

    settings = _settings(ctx)
    uri = resolve_tracking(settings, tracking_uri)
    try:
        result = run_pipeline(model, uri, settings.feature_store_url, stages or STAGES,
                              _key_values(params), log=click.echo)
    except (PipelineError, KeyError) as exc:
        raise StackError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    click.echo(f"pipeline run {result.parent_run_id} (experiment {result.experiment_id})"
               + (f": {model} version {result.version} is challenger" if result.version else ""))


def _alias_share(text: str, option: str, default: Optional[float] = None):
    """``ALIAS=PERCENT`` (``ALIAS`` alone when there is a default) as (alias, percent)."""
    alias, sep, percent = text.partition("=")
    try:
        share = float(percent) if sep else default
    except ValueError:
        share = None
    if not alias or share is None or not 0 < share <= 100:
        raise click.BadParameter(f"{text!r} is not ALIAS=PERCENT with 0 < PERCENT <= 100",
                                 param_hint=option)
    return alias, share


# The twin of PUT /retrain: the same pipeline, run here.
main.add_command(pipeline, name="retrain")


def _key_values(pairs) -> dict:
    """``KEY=VALUE`` options as a dict, numbers as numbers."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        for kind in (int, float):
            try:
                found[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            found[key] = value
    return found


def _register_and_report(settings: PlatformSettings, spec, tracking_uri: Optional[str],
                         experiment: Optional[str], force: bool, alias: Optional[str] = None):
    """Check MLflow and the artifact store answer, register, and print what happened."""
    from mlplatform.pyfunc_models.registration import register as register_model

    from .stack import StackError, StackState, http_ok
    from .stack import tracking_uri as resolve_tracking

    uri = resolve_tracking(settings, tracking_uri)
    if uri.startswith("http") and not http_ok(uri.rstrip("/") + "/health", timeout=5):
        raise StackError(f"MLflow tracking server {uri} is unreachable; "
                         "start it with `mlplatform up` or pass --tracking-uri")
    mlflow_process = StackState(settings.state_path).components.get("mlflow")
    destination = mlflow_process.info.get("artifacts_destination", "") if mlflow_process else ""
    _check_artifact_store(settings, destination)

    click.echo(f"registering {spec.name} in {uri} ...")
    try:
        result = register_model(spec, uri, alias=alias, experiment=experiment, force=force)
    except Exception as exc:  # any failure: one line naming the server, no traceback
        reason = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0]
        raise StackError(f"registering {spec.name} at {uri} failed: {reason}") from None
    _report_registration(result, destination)
    return result


def _report_registration(result, destination: str) -> None:
    if not result.trained:
        click.echo(f"{result.name} is up to date: {result.alias_uri} is version {result.version} "
                   "(same code; use --force to register anyway)")
    else:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
        click.echo(f"registered {result.model_uri} and set {result.alias_uri}"
                   + (f"\nmetrics: {metrics}" if metrics else ""))
    click.echo(f"model URI: {result.alias_uri} -> {result.model_uri}")
    click.echo(f"artifacts: {storage_location(result.artifact_uri, destination)}")


def _check_artifact_store(settings: PlatformSettings, destination: str) -> None:
    """When artifacts go to S3, make sure the endpoint answers before training anything."""
    if not settings.uses_s3 or (destination and not destination.startswith("s3://")):
        return
    from .s3 import ensure_bucket

    ensure_bucket(str(settings.s3_endpoint_url), settings.s3_bucket, *settings.s3_keys(),
                  create=False)


def storage_location(artifact_uri: str, destination: str) -> str:
    """Translate the proxy's ``mlflow-artifacts:/x`` into the real place (s3://... or a folder)."""
    prefix = "mlflow-artifacts:/"
    if destination and artifact_uri.startswith(prefix):
        return destination.rstrip("/") + "/" + artifact_uri[len(prefix):].lstrip("/")
    return artifact_uri


@main.command()
@click.argument("model", metavar="NAME[@ALIAS|/VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server.")
@click.pass_context
@_friendly_errors
def metadata(ctx: click.Context, model: str, as_json: bool, tracking_uri: Optional[str]) -> None:
    """Print a registered model's provenance, read back from its ONNX file.

    Git commit of the training code, save date, experiment, run and model name,
    as stamped into the file's metadata_props, plus the registry's view.
    """
    import json

    from mlplatform.mlserver_configs.generator import ModelReference
    from mlplatform.pyfunc_models.provenance import ProvenanceError, model_provenance

    from .stack import StackError
    from .stack import tracking_uri as resolve_tracking

    settings = _settings(ctx)
    reference = ModelReference.parse(model, settings.alias)
    try:
        found = model_provenance(resolve_tracking(settings, tracking_uri), reference.name,
                                 alias=reference.alias, version=reference.version)
    except ProvenanceError as exc:
        raise StackError(str(exc)) from None
    if found["onnx"] is None:
        version = found["registry"]["version"]
        raise StackError(f"{reference.name}/{version} has no ONNX file (artifacts/model.onnx); "
                         "only ONNX models carry training metadata")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for section, values in found.items():
        click.echo(f"{section}:")
        for key, value in values.items():
            click.echo(f"  {key:<16} {', '.join(value) if isinstance(value, list) else value}")


# ---------------------------------------------------------------- MLServer config


def _batching_options(func: Callable) -> Callable:
    func = click.option("--max-batch-time", type=float, default=0.0, show_default=True,
                        help="Seconds MLServer waits to fill a batch.")(func)
    func = click.option("--max-batch-size", type=int, default=0, show_default=True,
                        help="Adaptive batching: requests merged per call (0 or 1 = off).")(func)
    return click.option("--model", "models", multiple=True, metavar="NAME[@ALIAS|/VERSION]",
                        help="Model to serve (repeatable) [every model with the alias].")(func)


@main.command("mlserver-config")
@_batching_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("mlserver-config"), show_default=True, help="Folder to write.")
@click.option("--alias", help="Alias used when a model is named without one [champion].")
@_mlserver_options
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server.")
@click.pass_context
@_friendly_errors
def mlserver_config(ctx: click.Context, models, max_batch_size: int, max_batch_time: float,
                    out: Path, tracking_uri: Optional[str], **flags: Any) -> None:
    """Write settings.json and <model>/model-settings.json for `mlserver start OUT`.

    Each model's uri is pinned to the registry version its alias points at now.
    MLServer needs MLFLOW_TRACKING_URI in its environment to load them.
    """
    from mlflow.tracking import MlflowClient

    from mlplatform.mlserver_configs.generator import (
        BatchingOptions,
        ModelReference,
        models_with_alias,
        resolve,
        write_config,
    )

    from .stack import server_options
    from .stack import tracking_uri as resolve_tracking

    settings = _settings(ctx, **flags)
    uri = resolve_tracking(settings, tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    references = ([ModelReference.parse(m, settings.alias) for m in models] if models
                  else models_with_alias(client, settings.alias))
    resolved = [resolve(client, reference) for reference in references]
    written = write_config(out, server_options(settings, managed=False), resolved,
                           BatchingOptions(max_batch_size, max_batch_time))
    for path in written:
        click.echo(f"wrote {path}")
    for model in resolved:
        click.echo(f"  {model.name}: {model.uri} (stored at {model.storage_uri})")
    click.echo(f"start it with: MLFLOW_TRACKING_URI={uri} mlserver start {out}")


def _target_options(command: Callable) -> Callable:
    for option in reversed([
        click.option("--mlserver-url",
                     help="Deploy to this MLServer instead of the stack's (with --repository)."),
        click.option("--repository", type=click.Path(file_okay=False, path_type=Path),
                     help="The model repository folder that MLServer (--mlserver-url) loads "
                          "from."),
        click.option("--target", help="Name the served versions are recorded under [local]."),
        click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                     help="MLflow tracking server."),
    ]):
        command = option(command)
    return command


def _serving(settings: PlatformSettings, mlserver_url: Optional[str], repository: Optional[Path],
             target: Optional[str], tracking_uri: Optional[str], batching=None):
    """The serving target named by the flags (else the stack's MLServer)."""
    from mlflow.tracking import MlflowClient

    from mlplatform.mlserver_configs.generator import BatchingOptions
    from mlplatform.mlserver_configs.serving import Serving, ServingTarget
    from mlplatform.pyfunc_models.conventions import DEFAULT_TARGET

    from .stack import StackError, local_target
    from .stack import tracking_uri as resolve_tracking

    if bool(mlserver_url) != bool(repository):
        raise StackError("--mlserver-url and --repository go together: the server and the "
                         "folder it loads model settings from")
    where = (ServingTarget(mlserver_url.rstrip("/"), repository.resolve(), target or DEFAULT_TARGET)
             if mlserver_url else local_target(settings))
    if target and not mlserver_url:
        where = ServingTarget(where.url, where.repository, target)
    registry = MlflowClient(tracking_uri=resolve_tracking(settings, tracking_uri))
    return Serving(registry, where, batching=batching or BatchingOptions())


def _report_outcomes(ctx: click.Context, serving, outcomes) -> None:
    for outcome in outcomes:
        served = outcome.ok and outcome.version is not None
        click.echo(outcome.describe()
                   + (f"  -> {serving.target.url}/v2/models/{outcome.name}/infer" if served else ""))
    if any(not outcome.ok for outcome in outcomes):
        ctx.exit(1)


@main.command()
@_batching_options
@click.option("--promote", is_flag=True, help="Also make each --model version champion (the "
              "version served before becomes previous_champion, for `mlplatform rollback`).")
@_target_options
@click.pass_context
@_friendly_errors
def deploy(ctx: click.Context, models, max_batch_size: int, max_batch_time: float, promote: bool,
           mlserver_url: Optional[str], repository: Optional[Path], target: Optional[str],
           tracking_uri: Optional[str]) -> None:
    """Serve registered versions: load each one, switch to it once it answers, retire the old.

    Without --model: every model that has the alias [champion] (models that lost
    it are unloaded). With --model: exactly those; other models stay as they are.
    The old version answers until the new one is ready, so nothing fails meanwhile.
    """
    from mlplatform.mlserver_configs.generator import BatchingOptions, ModelReference, resolve

    from .stack import StackError

    settings = _settings(ctx)
    serving = _serving(settings, mlserver_url, repository, target, tracking_uri,
                       BatchingOptions(max_batch_size, max_batch_time))
    if promote and not models:
        raise StackError("--promote needs --model NAME@ALIAS or NAME/VERSION")
    if promote:
        references = [ModelReference.parse(m, settings.alias) for m in models]
        outcomes = [serving.promote(r.name, resolve(serving.registry, r).version)
                    for r in references]
    elif models:
        outcomes = serving.deploy_many(ModelReference.parse(m, settings.alias) for m in models)
    else:
        outcomes = serving.deploy_alias(settings.alias)
    if not outcomes:
        click.echo(f"no model has the alias {settings.alias!r}; run `mlplatform register <model>`")
    _report_outcomes(ctx, serving, outcomes)


@main.command()
@click.argument("model")
@_target_options
@click.pass_context
@_friendly_errors
def rollback(ctx: click.Context, model: str, mlserver_url: Optional[str],
             repository: Optional[Path], target: Optional[str],
             tracking_uri: Optional[str]) -> None:
    """Serve MODEL's previous champion again (what `deploy --promote` or POST /deploy/<id>
    replaced); the current one becomes previous_champion, so a second rollback undoes it."""
    serving = _serving(_settings(ctx), mlserver_url, repository, target, tracking_uri)
    _report_outcomes(ctx, serving, [serving.rollback(model)])


@main.command()
@click.argument("model")
@click.option("--canary", metavar="ALIAS=PERCENT",
              help="Send PERCENT % of the calls to MODEL to the version ALIAS points to.")
@click.option("--shadow", metavar="ALIAS[=PERCENT]",
              help="Copy every call (or PERCENT % of them) to MODEL to ALIAS's version; "
                   "compare, never answer.")
@click.option("--off", is_flag=True, help="No canary or shadow: unload the second version.")
@_target_options
@click.pass_context
@_friendly_errors
def route(ctx: click.Context, model: str, canary: Optional[str], shadow: Optional[str], off: bool,
          mlserver_url: Optional[str], repository: Optional[Path], target: Optional[str],
          tracking_uri: Optional[str]) -> None:
    """Canary or shadow a second version of MODEL beside the served one.

    \b
    mlplatform route fraud --canary challenger=10   10 % of /forward calls to fraud
    mlplatform route fraud --shadow challenger      a copy of each call, compared
    mlplatform route fraud --off                    back to the served version alone
    The second version is loaded first (nothing switches); the gateway applies the rule
    within its REGISTRY_TTL. GET /models/MODEL/shadow reports the comparison.
    """
    from mlplatform.pyfunc_models.conventions import CANARY, SHADOW

    from .stack import StackError

    if sum(bool(x) for x in (canary, shadow, off)) != 1:
        raise StackError("give one of --canary ALIAS=PERCENT, --shadow ALIAS or --off")
    serving = _serving(_settings(ctx), mlserver_url, repository, target, tracking_uri)
    if off:
        outcome = serving.clear_route(model)
    elif shadow:
        alias, share = _alias_share(shadow, "--shadow", default=100.0)
        outcome = serving.route(model, SHADOW, alias, share)
    else:
        alias, share = _alias_share(canary, "--canary")
        outcome = serving.route(model, CANARY, alias, share)
    click.echo(outcome.describe())
    if not outcome.ok:
        ctx.exit(1)


@main.command()
@click.argument("model")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server.")
@click.pass_context
@_friendly_errors
def history(ctx: click.Context, model: str, tracking_uri: Optional[str]) -> None:
    """MODEL's versions: aliases, served, pipeline check, created and deployed, metrics."""
    from mlplatform.gateway.errors import GatewayError
    from mlplatform.gateway.lifecycle import versions
    from mlplatform.gateway.settings import GatewaySettings

    from .stack import StackError
    from .stack import tracking_uri as resolve_tracking

    uri = resolve_tracking(_settings(ctx), tracking_uri)
    try:
        rows = versions(GatewaySettings(tracking_uri=uri), model)
    except GatewayError as exc:
        raise StackError(exc.detail) from None
    click.echo(f"{'version':>7}  {'served':6}  {'aliases':28}  {'check':6}  {'created':19}  "
               f"{'deployed':19}  metrics")
    for row in rows:
        metrics = row["metrics"]
        key = "roc_auc" if "roc_auc" in metrics else "macro_f1" if "macro_f1" in metrics else None
        shown = f"{key} {metrics[key]:.4f}" if key else ""
        click.echo(f"{row['version']:>7}  {'yes' if row['served'] else '':6}  "
                   f"{','.join(row['aliases']):28}  {row['pipeline_status'] or '':6}  "
                   f"{(row['created_at'] or '')[:19]:19}  {(row['deployed_at'] or '')[:19]:19}  "
                   f"{shown}")


@main.command("add-data")
@click.argument("model")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@_friendly_errors
def add_data(ctx: click.Context, model: str, file: Path) -> None:
    """Append the labelled rows of FILE (CSV: features + label column) to MODEL's training
    data in the feature store; every row valid, or nothing is written."""
    from mlplatform.gateway.errors import GatewayError
    from mlplatform.gateway.lifecycle import add_data as add
    from mlplatform.gateway.settings import GatewaySettings

    from .stack import StackError

    settings = _settings(ctx)
    try:
        batch = add(GatewaySettings(feature_store_url=settings.feature_store_url), model,
                    file.read_bytes(), file.name)
    except GatewayError as exc:
        raise StackError(exc.detail) from None
    click.echo(f"batch {batch['batch_id']}: {batch['rows']} rows added to {batch['dataset']} "
               f"({batch['dataset_rows']} rows now)")


@main.command()
@click.argument("route")
@click.option("--lang", "language", type=click.Choice(["curl", "python", "javascript"]),
              default="curl", show_default=True)
@click.option("--model", help="Add ?model=NAME to the request.")
@click.option("--base-url", help="Gateway URL [the running stack's].")
@click.pass_context
@_friendly_errors
def snippet(ctx: click.Context, route: str, language: str, model: Optional[str],
            base_url: Optional[str]) -> None:
    """Print a working request to a gateway ROUTE (e.g. /forward, /predict, /forward_batch)."""
    from mlplatform.gateway.snippets import snippet as make_snippet

    from .stack import StackError, gateway_url

    try:
        click.echo(make_snippet(route, language, base_url or gateway_url(_settings(ctx)), model))
    except KeyError as exc:
        raise StackError(exc.args[0]) from None


@main.group()
def token() -> None:
    """Access tokens for the gateway's write routes (and predict routes when closed)."""


@token.command("create")
@click.option("--group", required=True, help="Who the token is for (a team, a service).")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="What it may do, once per scope: predict, jobs, lifecycle, "
                   "lifecycle:<model>, predictions:read, admin (see docs/gateway.md).")
@click.pass_context
@_friendly_errors
def token_create(ctx: click.Context, group: str, scopes: tuple) -> None:
    """Create a token for GROUP allowed each --scope. It is printed once; only its hash is
    stored."""
    from mlplatform.gateway.scopes import ScopeError
    from mlplatform.gateway.store import Store

    from .stack import StackError

    try:
        token_id, secret = Store(_settings(ctx).gateway_database_url).create_token(group, scopes)
    except ScopeError as exc:
        raise StackError(f"{exc} (mlplatform token create --group {group} --scope SCOPE "
                         "[--scope SCOPE ...])") from None
    click.echo(f"token {token_id} for group {group!r}, scopes {' '.join(sorted(set(scopes)))} "
               "(shown once, keep it safe):")
    click.echo(secret)


@token.command("list")
@click.pass_context
@_friendly_errors
def token_list(ctx: click.Context) -> None:
    """List tokens: ids, groups, scopes (the tokens themselves are not stored).  A token made
    before scopes existed works as admin and is flagged: replace it with a narrower one."""
    from mlplatform.gateway.store import Store

    for row in Store(_settings(ctx).gateway_database_url).tokens():
        state = "revoked" if row.revoked else "active"
        grant = row.grant
        scopes = ("admin (made before scopes: replace it)" if grant.legacy
                  else " ".join(sorted(grant.scopes)))
        click.echo(f"{row.id}  {row.group:<20} {state:<8} created "
                   f"{row.created_at:%Y-%m-%d %H:%M}  {scopes}")


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
@_friendly_errors
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke the token with TOKEN_ID (see `mlplatform token list`)."""
    from mlplatform.gateway.store import Store

    from .stack import StackError

    if not Store(_settings(ctx).gateway_database_url).revoke(token_id):
        raise StackError(f"no token with id {token_id!r}")
    click.echo(f"token {token_id} revoked")


# ---------------------------------------------------------------- MinIO


@main.command()
@click.argument("model", metavar="NAME[@ALIAS|/VERSION]")
@click.argument("source", metavar="INPUT")
@click.argument("output", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="local: stream the file through the model in this process; spark: "
                   "mlflow.pyfunc.spark_udf on Spark.")
@click.option("--master", default="local[*]", show_default=True,
              help="Spark master (--engine spark): local[N], spark://host:7077, yarn, k8s://...")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="Rows per chunk (--engine local).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server.")
@click.pass_context
@_friendly_errors
def batch(ctx: click.Context, model: str, source: Path, output: Path, engine: str, master: str,
          chunk_rows: int, tracking_uri: Optional[str]) -> None:
    """Score a CSV or Parquet file with a registered model into OUTPUT (.csv or .parquet).

    INPUT is a local file, or (with --engine spark) any URI Spark reads: s3a://, hdfs://."""
    import os

    from mlflow.tracking import MlflowClient

    from mlplatform.mlserver_configs.generator import ConfigError, resolve
    from mlplatform.pyfunc_models.conventions import ModelReference

    from .batch_scoring import BatchError, file_format, is_remote, score_local, score_spark
    from .stack import StackError
    from .stack import tracking_uri as resolve_tracking

    settings = _settings(ctx)
    try:
        file_format(Path(source)), file_format(output)
        if is_remote(source):
            if engine != "spark":
                raise BatchError(f"{source}: the local engine reads local files; use "
                                 "--engine spark for a URI")
        elif not Path(source).is_file():
            raise BatchError(f"{source}: no such file")
        uri = resolve_tracking(settings, tracking_uri)
        resolved = resolve(MlflowClient(tracking_uri=uri), ModelReference.parse(model, settings.alias))
        os.environ.setdefault("MLFLOW_TRACKING_URI", uri)  # Spark's workers load models:/ too
        if engine == "spark":
            where = source if is_remote(source) else Path(source).resolve()
            result = score_spark(resolved.uri, where, output.resolve(), master)
        else:
            result = score_local(resolved.uri, Path(source), output, chunk_rows)
    except (BatchError, ConfigError) as exc:
        raise StackError(str(exc)) from None
    click.echo(f"scored {result.rows:,} rows with {result.model_uri} ({engine}) in "
               f"{result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s) -> {result.output}")


@main.group()
def k8s() -> None:
    """Kubernetes + KServe manifests from the registry (docs/kubernetes.md)."""


@k8s.command("render")
@click.argument("model", metavar="NAME[@ALIAS|/VERSION]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write <name>.yaml into this folder (default: print the YAML).")
@click.option("--namespace", default="mlplatform", show_default=True)
@click.option("--image", default="mlplatform/platform:0.1.0", show_default=True,
              help="The platform image (infra/docker) for MLServer and the gateway.")
@click.option("--min-replicas", type=int, default=1, show_default=True)
@click.option("--max-replicas", type=int, default=3, show_default=True)
@click.option("--cpu", default="1", show_default=True, help="Per predictor replica.")
@click.option("--memory", default="2Gi", show_default=True, help="Per predictor replica.")
@click.option("--s3-secret", default="mlplatform-s3", show_default=True,
              help="The Secret holding the S3 keys (created with kubectl, never rendered).")
@click.option("--cluster-tracking-uri", default="http://mlflow.mlplatform.svc.cluster.local:5000",
              show_default=True, help="MLflow as the gateway in the cluster reaches it.")
@click.option("--artifacts-destination",
              help="Where the tracking server stores artifacts (s3://bucket), when it is not "
                   "this stack's.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
              help="MLflow to resolve the model in [the stack's].")
@click.pass_context
@_friendly_errors
def k8s_render(ctx: click.Context, model: str, out: Optional[Path], namespace: str, image: str,
               min_replicas: int, max_replicas: int, cpu: str, memory: str, s3_secret: str,
               cluster_tracking_uri: str, artifacts_destination: Optional[str],
               tracking_uri: Optional[str]) -> None:
    """Render a KServe InferenceService (V2, MLServer runtime, storageUri = the S3 location
    the alias resolves to now), its ServingRuntime and the model's gateway."""
    import yaml
    from mlflow.tracking import MlflowClient

    from mlplatform.mlserver_configs.generator import ConfigError, resolve
    from mlplatform.mlserver_configs.kserve import KServeOptions, RenderError, object_name, render
    from mlplatform.pyfunc_models.conventions import ModelReference

    from .stack import StackError
    from .stack import tracking_uri as resolve_tracking

    settings = _settings(ctx)
    options = KServeOptions(namespace=namespace, image=image, min_replicas=min_replicas,
                            max_replicas=max_replicas, cpu=cpu, memory=memory,
                            s3_secret=s3_secret, tracking_uri=cluster_tracking_uri)
    registry = MlflowClient(tracking_uri=resolve_tracking(settings, tracking_uri))
    try:
        resolved = resolve(registry, ModelReference.parse(model, settings.alias))
        storage = storage_location(resolved.storage_uri,
                                   artifacts_destination or settings.artifacts_destination)
        objects = render(resolved, storage, options)
    except (ConfigError, RenderError) as exc:
        raise StackError(str(exc)) from None
    text = (f"# mlplatform k8s render {model}: {resolved.uri}"
            f"{f' (@{resolved.alias})' if resolved.alias else ''}\n"
            + yaml.safe_dump_all(objects, sort_keys=False))
    if out is None:
        click.echo(text, nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{object_name(resolved.name)}.yaml"
    path.write_text(text)
    click.echo(f"wrote {path}: {resolved.uri} from {storage}")


@main.group()
def minio() -> None:
    """Run a real MinIO server for the artifact store (needs a `minio` binary)."""


@minio.command("up")
@click.option("--minio-port", type=int, help="S3 API port [9000].")
@click.option("--minio-console-port", type=int, help="Web console port [9001].")
@click.option("--s3-bucket", help="Bucket to create [mlplatform].")
@click.option("--host", help="Interface to bind [127.0.0.1].")
@click.pass_context
@_friendly_errors
def minio_up(ctx: click.Context, **flags: Any) -> None:
    """Start MinIO in the state folder and create the bucket.

    Root user and password are AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (env or .env).
    Then set MLFLOW_S3_ENDPOINT_URL to the printed URL and run `mlplatform up`.
    """
    from .stack import start_minio

    process = start_minio(_settings(ctx, **flags), report=click.echo)
    click.echo(f"export MLFLOW_S3_ENDPOINT_URL={process.url}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("role", type=str)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def container(ctx: click.Context, role: str, arguments) -> None:
    """Run a role of the platform image: mlflow, mlserver, gateway or health
    (infra/docker; configured by environment variables). Any other ROLE is run as a
    command with ARGUMENTS."""
    from .container import RoleError, run

    try:
        ctx.exit(run(role, list(arguments)))
    except RoleError as exc:
        raise click.ClickException(str(exc)) from None
