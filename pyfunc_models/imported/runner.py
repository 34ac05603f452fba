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
