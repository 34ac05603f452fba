"""Turn a folder of plain Python into a registrable model (``mlplatform import``).

The folder's code, artifacts and extra files travel inside the MLflow model as
one directory artifact (``bundle``), its ``requirements.txt`` becomes the
model's pip requirements; the platform runtime (``mlplatform``) is installed where MLServer
runs, so MLServer loads it from the registry like any other model.

Before anything is registered the folder is checked: the descriptor
(``descriptors.py``), every target's function must import, and each JSON target
is run on the sample input and must return something JSON-serialisable
(numpy ``int64`` / ``float64`` are converted, as seed 002 warns).
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Optional, Tuple

from ..catalog import BuildContext, ModelBundle, ModelSpec
from ..errors import ModelInputError
from .descriptors import DescriptorError, ImportSpec, read_descriptor, read_sample
from .model import BUNDLE_ARTIFACT, ImportedModel
from .usercode import UserCodeError

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", ".ipynb_checkpoints",
                                 ".DS_Store")


class ImportValidationError(DescriptorError):
    """The folder's code does not run as its descriptor says."""


def model_name_for(folder: Path, name: Optional[str] = None) -> str:
    """The registered name: ``name``, else the folder's name made URL- and MLflow-safe."""
    chosen = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.resolve().name).strip("_.-")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", chosen or ""):
        raise DescriptorError(f"model name {chosen!r}: use letters, digits, '_', '.', '-' "
                              "(pass --name)")
    return chosen


def validate(folder: Path, spec: ImportSpec) -> ImportedModel:
    """Import every target and run each JSON target on the sample input (if there is one)."""
    descriptor = folder / spec.descriptor
    try:
        model = ImportedModel().attach(spec, folder)
    except UserCodeError as exc:
        raise ImportValidationError(f"{descriptor}: {exc}") from exc
    for target in spec.json_targets if spec.sample is not None else ():
        try:
            model.call_json(target, spec.sample)
        except ModelInputError as exc:
            raise ImportValidationError(
                f"{descriptor}: target {target.name!r} ({target.module}.{target.function}) "
                f"failed on {spec.sample_file}: {exc}") from exc
    return model


def import_folder(folder: Path, name: Optional[str] = None,
                  example: Optional[Path] = None) -> Tuple[ModelSpec, ImportSpec]:
    """Validate ``folder``; a ``ModelSpec`` for ``registration.register`` and its descriptor.

    ``example``: a JSON file to use as the sample input instead of the folder's own.
    """
    folder = folder.resolve()
    spec = read_descriptor(folder)
    if example is not None:
        sample, sample_file = read_sample(example)
        spec = dataclasses.replace(spec, sample=sample, sample_file=sample_file)
    validate(folder, spec)
    model_name = model_name_for(folder, name)

    def build(context: BuildContext) -> ModelBundle:
        bundle = context.workdir / BUNDLE_ARTIFACT
        shutil.copytree(folder, bundle, ignore=IGNORED)
        return ModelBundle(
            python_model=ImportedModel(),
            input_example=spec.sample,
            artifacts={BUNDLE_ARTIFACT: str(bundle)},
            params={"flavor": spec.flavor, "title": spec.title,
                    "targets": ", ".join(f"{t.name}:{t.task_type}" for t in spec.targets)},
            model_config=spec.to_config(),
        )

    model_spec = ModelSpec(model_name, spec.description or spec.title, build,
                           raw_requirements=spec.requirements, source_dir=folder)
    return model_spec, spec
