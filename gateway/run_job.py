"""``python -m mlplatform.gateway.run_job JOB_ID OWNER``: run one leased job, in a process of
its own; the outcome is recorded only while the lease is still ``OWNER``'s.

The gateway starts one of these per job, so the data scientist's code (which
may change directory, crash or use a lot of memory) never runs inside the
gateway.  The input comes from, and the output goes to, the job store.
"""
from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

from mlplatform.pyfunc_models.conventions import ModelReference

from .files import JobFiles
from .settings import GatewaySettings
from .store import PIPELINE_TARGET, Store


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
        from mlplatform.pyfunc_models.imported.runner import run_target

        with tempfile.TemporaryDirectory(prefix="mlplatform-job-") as folder:
            work = Path(folder)
            (work / "input").mkdir()
            source = files.fetch(job.input_key, work / "input" / job.input_name)
            reference = ModelReference.parse(job.model, settings.alias)
            outcome = run_target(reference.uri, reference.name, job.target, source,
                                 work / "output", settings.tracking_uri, work / "model")
            if outcome.output is not None:
                key = f"{job.id}/output/{outcome.output.name}"
                files.put_file(key, outcome.output)
                store.finish(job.id, output_name=outcome.output.name, output_key=key,
                             owner=owner)
            else:
                report = work / "result.json"
                registered = outcome.registration
                report.write_text(
                    f'{{"registered": "{registered.model_uri}", "alias": "{registered.alias_uri}"}}'
                    if registered else str(outcome.answer))
                key = f"{job.id}/output/result.json"
                files.put_file(key, report)
                store.finish(job.id, output_name="result.json", output_key=key, owner=owner)
    except Exception as exc:  # the job failed: record why, keep the gateway unaffected
        traceback.print_exc()
        store.finish(job.id, error=f"{type(exc).__name__}: {exc}"[:4000], owner=owner)
    return 0


def _pipeline(job, store: Store, files: JobFiles, settings: GatewaySettings, owner: str) -> int:
    """A retraining (``PUT /retrain``): the pipeline on the feature store; the result is
    a small JSON naming the runs, the new version and its metrics."""
    import json

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
