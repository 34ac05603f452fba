"""Run a target of a registered imported model on a file: the one code path behind
``mlplatform run`` and the gateway's jobs.

The registered model is downloaded into ``workdir`` (its own copy of the
folder), so a FileToArtifact target can rewrite its artifacts there; the
rewritten folder is then validated and registered as a new version.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import mlflow

from ..errors import ModelInputError
from ..registration import Registration, register
from .importer import import_folder
from .model import ImportedModel

ALL_TASKS = ("JsonToJson", "FileToFile", "FileToArtifact")


@dataclass
class RunOutcome:
    target: str
    task_type: str
    output: Optional[Path] = None                 # FileToFile / Async
    answer: Any = None                            # JsonToJson / Sync
    registration: Optional[Registration] = None  # FileToArtifact


def load_imported(model_uri: str, tracking_uri: str, workdir: Path) -> ImportedModel:
    mlflow.set_tracking_uri(tracking_uri)
    workdir.mkdir(parents=True, exist_ok=True)
    loaded = mlflow.pyfunc.load_model(model_uri, dst_path=str(workdir)).unwrap_python_model()
    if not isinstance(loaded, ImportedModel):
        raise ModelInputError(f"{model_uri} is not an imported model; only imported folders "
                              "have file targets")
    return loaded


def run_target(model_uri: str, model_name: str, target: str, file: Path, output_dir: Path,
               tracking_uri: str, workdir: Path, alias: Optional[str] = None) -> RunOutcome:
    model = load_imported(model_uri, tracking_uri, workdir)
    chosen = model.target(target, ALL_TASKS)
    if chosen.task_type == "JsonToJson":
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelInputError(f"{file.name}: not valid JSON ({exc})") from exc
        return RunOutcome(chosen.name, chosen.task_type, answer=model.call_json(chosen, data))
    produced = model.run_file(chosen.name, file, output_dir)
    if chosen.task_type == "FileToFile":
        return RunOutcome(chosen.name, chosen.task_type, output=produced)
    spec, _ = import_folder(produced, model_name)  # the retrained folder must still import
    registration = register(spec, tracking_uri, alias=alias, force=True)
    return RunOutcome(chosen.name, chosen.task_type, registration=registration)


def outcome_record(outcome: RunOutcome) -> dict:
    """What a job's user-code process reports to the job runner (JSON)."""
    registration = outcome.registration
    return {"target": outcome.target, "task_type": outcome.task_type,
            "output": str(outcome.output) if outcome.output is not None else None,
            "answer": outcome.answer,
            "registration": None if registration is None else {
                "model_uri": registration.model_uri, "alias_uri": registration.alias_uri}}


def main(argv: list) -> int:
    """``python -m mlplatform.pyfunc_models.imported.runner OUTCOME MODEL_URI NAME TARGET FILE
    OUTPUT_DIR WORKDIR``: one target run in a process of its own, the registry from
    ``MLFLOW_TRACKING_URI``; the outcome (or the error) is written as JSON to OUTCOME.  The
    gateway's jobs start it with a minimal environment (gateway/jobs.py: job_environment)."""
    import os
    import sys
    import traceback

    if len(argv) != 7:
        print(main.__doc__, file=sys.stderr)
        return 2
    outcome_path, model_uri, name, target, file, output_dir, workdir = argv
    try:
        outcome = run_target(model_uri, name, target, Path(file), Path(output_dir),
                             os.environ["MLFLOW_TRACKING_URI"], Path(workdir))
        record = outcome_record(outcome)
    except Exception as exc:  # the model's failure: reported, not raised past the job
        traceback.print_exc()
        record = {"error": f"{type(exc).__name__}: {exc}"}
    Path(outcome_path).write_text(json.dumps(record, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
