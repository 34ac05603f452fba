"""``python -m mlplatform.gateway.run_job JOB_ID OWNER``: run one leased job, in a process of
its own; the outcome is recorded only while the lease is still ``OWNER``'s.

The gateway starts one of these per job, so the data scientist's code (which
may change directory, crash or use a lot of memory) never runs inside the
gateway.  The input comes from, and the output goes to, the job store.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Dict

from mlplatform.pyfunc_models.conventions import ModelReference

from .files import JobFiles
from .settings import GatewaySettings
from .store import PIPELINE_TARGET, Store


class JobCodeFailed(Exception):
    """The model's own code failed; its message is the job's error."""


def job_environment(settings: GatewaySettings, work: Path) -> Dict[str, str]:
    """Everything the model's code sees of its environment: the registry's address and a
    home, temp folder and locale of its own.  Not the gateway's database URL, S3 keys,
    tokens or anything else the gateway runs with: those stay in this process.  Artifacts
    travel through MLflow (``--serve-artifacts``), so the code needs no S3 keys; where
    MLflow requires an account, the job account's credentials are a file in the job's own
    home (``job_tracking_username``), not a variable."""
    home = work / "home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    password = settings.job_tracking_password.get_secret_value()
    if settings.job_tracking_username and password:  # read by MLflow's client, 0600
        (home / ".mlflow").mkdir(mode=0o700)
        descriptor = os.open(home / ".mlflow" / "credentials", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"[mlflow]\nmlflow_tracking_username = {settings.job_tracking_username}"
                         f"\nmlflow_tracking_password = {password}\n")
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}",
           "HOME": str(home), "TMPDIR": str(home / "tmp"), "LANG": "C.UTF-8",
           "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("MLFLOW_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION", "TZ"):  # addresses, no keys
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def run_user_code(work: Path, settings: GatewaySettings, model_uri: str, name: str,
                  target: str, source: Path) -> Dict[str, Any]:
    """The target run by ``pyfunc_models.imported.runner`` in a process of its own, in the
    job's folder and with ``job_environment``; its outcome record, or JobCodeFailed."""
    outcome_path = work / "outcome.json"
    command = [sys.executable, "-m", "mlplatform.pyfunc_models.imported.runner",
               str(outcome_path), model_uri, name, target, str(source), str(work / "output"),
               str(work / "model")]
    finished = subprocess.run(command, cwd=work, env=job_environment(settings, work),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              preexec_fn=_die_with_parent)
    sys.stderr.write(finished.stderr[-8000:])  # the runner's log (the gateway keeps its tail)
    if not outcome_path.exists():
        raise JobCodeFailed(f"the job's process exited {finished.returncode} without an "
                            f"outcome: {finished.stderr.strip()[-1000:]}")
    outcome = json.loads(outcome_path.read_text(encoding="utf-8"))
    if "error" in outcome:
        raise JobCodeFailed(outcome["error"])
    return outcome


def _die_with_parent() -> None:
    """In the model's process before it starts: killed when this runner dies (the gateway
    kills the runner at the job's timeout, and a gateway's whole group when it stops)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(job_id: str, owner: str = None) -> int:
    settings = GatewaySettings()
    store, files = Store(settings.database_url), JobFiles(settings.jobs_storage)
    job = store.job(job_id)
    if job is None:
        print(f"no job {job_id}", file=sys.stderr)
        return 2
    if job.target == PIPELINE_TARGET:
        return _pipeline(job, store, files, settings, owner)
    try:
        with tempfile.TemporaryDirectory(prefix="mlplatform-job-") as folder:
            work = Path(folder)
            (work / "input").mkdir()
            source = files.fetch(job.input_key, work / "input" / job.input_name)
            reference = ModelReference.parse(job.model, settings.alias)
            outcome = run_user_code(work, settings, reference.uri, reference.name, job.target,
                                    source)
            if outcome.get("output"):
                produced = Path(outcome["output"])
                key = f"{job.id}/output/{produced.name}"
                files.put_file(key, produced)
                store.finish(job.id, output_name=produced.name, output_key=key, owner=owner)
            else:
                report = work / "result.json"
                registered = outcome.get("registration")
                report.write_text(json.dumps(
                    {"registered": registered["model_uri"], "alias": registered["alias_uri"]}
                    if registered else outcome.get("answer")))
                key = f"{job.id}/output/result.json"
                files.put_file(key, report)
                store.finish(job.id, output_name="result.json", output_key=key, owner=owner)
    except Exception as exc:  # the job failed: record why, keep the gateway unaffected
        traceback.print_exc()
        message = str(exc) if isinstance(exc, JobCodeFailed) else f"{type(exc).__name__}: {exc}"
        store.finish(job.id, error=message[:4000], owner=owner)
    return 0


def _pipeline(job, store: Store, files: JobFiles, settings: GatewaySettings, owner: str) -> int:
    """A retraining (``PUT /retrain``): the pipeline on the feature store; the result is
    a small JSON naming the runs, the new version and its metrics."""
    from mlplatform.pyfunc_models.pipeline import PipelineError, run_pipeline

    def started(result) -> None:
        store.record_training(job.id, run_id=result.parent_run_id,
                              experiment_id=result.experiment_id)

    try:
        result = run_pipeline(job.model, settings.tracking_uri, settings.feature_store_url,
                              log=print, on_start=started)
    except Exception as exc:  # PipelineError names the stage; anything else, the type
        traceback.print_exc()
        found = getattr(exc, "result", None)
        if found is not None and found.version:
            store.record_training(job.id, version=found.version)
        message = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        store.finish(job.id, error=message[:4000], owner=owner)
        return 0
    store.record_training(job.id, version=result.version)
    with tempfile.TemporaryDirectory(prefix="mlplatform-job-") as folder:
        report = Path(folder) / "result.json"
        report.write_text(json.dumps({
            "model": result.model, "version": result.version, "run_id": result.parent_run_id,
            "experiment_id": result.experiment_id, "stages": result.stages,
            "metrics": result.served_metrics, "champion_version": result.champion_version,
            "champion_metrics": result.champion_metrics}, indent=1))
        key = f"{job.id}/output/result.json"
        files.put_file(key, report)
        store.finish(job.id, output_name="result.json", output_key=key, owner=owner)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
