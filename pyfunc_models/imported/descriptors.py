"""Read and validate the descriptor of a folder of plain Python to import.

Two formats, one result (``ImportSpec``):

* **MMF** (seed 000): ``mmf.yml`` with ``name``, ``description``, ``targets``
  (``path: module.function``, ``name``, ``taskType`` in JsonToJson | FileToFile
  | FileToArtifact, ``taskOptions``) and ``artifacts`` (``name``, ``path``).
  A JSON sample input for the JsonToJson targets sits beside it as
  ``example.json`` (or ``schema.json``).
* **Neomaril** (seed 002): ``neomaril.yml`` naming what its ``create_model``
  call names — ``name``, ``source`` (e.g. ``app.py``), ``entrypoint``
  (``score``), ``operation`` (Sync | Async), ``schema`` (the JSON sample,
  required for Sync), ``model_file``, ``requirements``, ``extra_files``.

Every error names the file, the field and what was expected.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

MMF_FILE = "mmf.yml"
NEOMARIL_FILE = "neomaril.yml"
SAMPLE_FILES = ("example.json", "schema.json")
TASK_TYPES = ("JsonToJson", "FileToFile", "FileToArtifact")
OPERATIONS = {"Sync": "JsonToJson", "Async": "FileToFile"}


class DescriptorError(ValueError):
    """The folder cannot be imported; the message names file, field and expectation."""


@dataclass(frozen=True)
class Target:
    name: str           # as written in the descriptor (free text, e.g. "Скоринг")
    module: str         # "main"
    function: str       # "score"
    task_type: str      # JsonToJson | FileToFile | FileToArtifact
    convention: str     # "mmf": f(data) / f(path); "neomaril": f(data, base_path) / f(dir, base)
    description: str = ""
    updates: Tuple[str, ...] = ()  # FileToArtifact: artifact paths the function rewrites

    def matches(self, wanted: str) -> bool:
        return wanted in (self.name, self.function, f"{self.module}.{self.function}")


@dataclass(frozen=True)
class ImportSpec:
    flavor: str                       # "mmf" | "neomaril"
    title: str                        # the descriptor's name (free text)
    description: str
    targets: Tuple[Target, ...]
    artifacts: Tuple[Tuple[str, str], ...] = ()   # (name, path relative to the folder)
    requirements: Tuple[str, ...] = ()
    sample: Any = None                # parsed JSON sample input, if any
    sample_file: str = ""
    descriptor: str = ""

    @property
    def json_targets(self) -> List[Target]:
        return [t for t in self.targets if t.task_type == "JsonToJson"]

    def to_config(self) -> Dict[str, Any]:
        """A plain dict for MLflow's ``model_config`` (the served model reads it back)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "ImportSpec":
        values = dict(config)
        values["targets"] = tuple(
            Target(**{**t, "updates": tuple(t.get("updates", ()))}) for t in values["targets"])
        values["artifacts"] = tuple(tuple(a) for a in values.get("artifacts", ()))
        values["requirements"] = tuple(values.get("requirements", ()))
        return cls(**values)


def read_descriptor(folder: Path) -> ImportSpec:
    """Find and validate the folder's descriptor."""
    if not folder.is_dir():
        raise DescriptorError(f"{folder}: not a folder")
    mmf, neomaril = folder / MMF_FILE, folder / NEOMARIL_FILE
    if mmf.exists() and neomaril.exists():
        raise DescriptorError(f"{folder}: has both {MMF_FILE} and {NEOMARIL_FILE}; keep one")
    if mmf.exists():
        return _read_mmf(folder, mmf)
    if neomaril.exists():
        return _read_neomaril(folder, neomaril)
    raise DescriptorError(f"{folder}: no {MMF_FILE} (MMF) or {NEOMARIL_FILE} (Neomaril) descriptor")


def _load_yaml(path: Path) -> Dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DescriptorError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise DescriptorError(f"{path}: expected a mapping of fields at the top level")
    return document


def _text(document: Dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = document.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DescriptorError(f"{where}: {key}: required, a non-empty string")
        return ""
    if not isinstance(value, (str, int, float)):
        raise DescriptorError(f"{where}: {key}: expected a string, got {type(value).__name__}")
    return str(value)


def _split_path(path: str, where: str) -> Tuple[str, str]:
    if not re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", path):
        raise DescriptorError(f"{where}: path: {path!r} is not 'module.function' (e.g. main.score)")
    module, function = path.rsplit(".", 1)
    return module, function


def _read_mmf(folder: Path, path: Path) -> ImportSpec:
    document = _load_yaml(path)
    name = _text(document, "name", str(path))
    targets_raw = document.get("targets")
    if not isinstance(targets_raw, list) or not targets_raw:
        raise DescriptorError(f"{path}: targets: required, a non-empty list of targets")
    artifacts = _mmf_artifacts(folder, path, document.get("artifacts") or [])
    targets = []
    for index, raw in enumerate(targets_raw):
        where = f"{path}: targets[{index}]"
        if not isinstance(raw, dict):
            raise DescriptorError(f"{where}: expected a mapping with path, name, taskType")
        module, function = _split_path(_text(raw, "path", where), where)
        task_type = _text(raw, "taskType", where)
        if task_type not in TASK_TYPES:
            raise DescriptorError(
                f"{where}: taskType: {task_type!r} is not one of {', '.join(TASK_TYPES)}")
        options = raw.get("taskOptions") or {}
        if not isinstance(options, dict):
            raise DescriptorError(f"{where}: taskOptions: expected a mapping")
        updates = tuple(str(a) for a in options.get("artifacts") or ())
        known = {p for _, p in artifacts} | {n for n, _ in artifacts}
        for item in updates:
            if item not in known:
                raise DescriptorError(
                    f"{where}: taskOptions.artifacts: {item!r} is not an artifact of {MMF_FILE}")
        targets.append(Target(_text(raw, "name", where, required=False) or function, module,
                              function, task_type, "mmf", _text(raw, "description", where, False),
                              updates))
    _unique_target_names(targets, path)
    sample, sample_file = _sample(folder, [folder / f for f in SAMPLE_FILES])
    return ImportSpec("mmf", name, _text(document, "description", str(path), False),
                      tuple(targets), tuple(artifacts), _requirements(folder), sample, sample_file,
                      MMF_FILE)


def _mmf_artifacts(folder: Path, path: Path, raw: Any) -> List[Tuple[str, str]]:
    if not isinstance(raw, list):
        raise DescriptorError(f"{path}: artifacts: expected a list of {{name, path}}")
    artifacts = []
    for index, item in enumerate(raw):
        where = f"{path}: artifacts[{index}]"
        if not isinstance(item, dict):
            raise DescriptorError(f"{where}: expected a mapping with name and path")
        relative = _inside(folder, _text(item, "path", where), f"{where}: path")
        artifacts.append((_text(item, "name", where, required=False) or relative, relative))
    return artifacts


def _read_neomaril(folder: Path, path: Path) -> ImportSpec:
    document = _load_yaml(path)
    name = _text(document, "name", str(path))
    source = _inside(folder, _text(document, "source", str(path)), f"{path}: source")
    if not source.endswith(".py"):
        raise DescriptorError(f"{path}: source: {source!r} must be a .py file")
    entrypoint = _text(document, "entrypoint", str(path), required=False) or "score"
    if not entrypoint.isidentifier():
        raise DescriptorError(f"{path}: entrypoint: {entrypoint!r} is not a function name")
    operation = _text(document, "operation", str(path))
    if operation not in OPERATIONS:
        raise DescriptorError(
            f"{path}: operation: {operation!r} is not one of {', '.join(OPERATIONS)}")
    artifacts = []
    for key in ("model_file",):
        if document.get(key):
            artifacts.append((key, _inside(folder, _text(document, key, str(path)), f"{path}: {key}")))
    extra = document.get("extra_files") or []
    if not isinstance(extra, list):
        raise DescriptorError(f"{path}: extra_files: expected a list of file paths")
    for index, item in enumerate(extra):
        artifacts.append((f"extra_files[{index}]",
                          _inside(folder, str(item), f"{path}: extra_files[{index}]")))
    module = source[:-3].replace("/", ".")
    target = Target(entrypoint, module, entrypoint, OPERATIONS[operation], "neomaril",
                    str(document.get("description") or ""))
    schema = _text(document, "schema", str(path), required=False)
    candidates = [folder / _inside(folder, schema, f"{path}: schema")] if schema else []
    sample, sample_file = _sample(folder, candidates)
    requirements_file = _text(document, "requirements", str(path), required=False)
    return ImportSpec("neomaril", name, str(document.get("description") or ""), (target,),
                      tuple(artifacts), _requirements(folder, requirements_file), sample,
                      sample_file, NEOMARIL_FILE)


def _inside(folder: Path, relative: str, where: str) -> str:
    """A path that exists inside the folder (no escaping with .. or absolute paths)."""
    candidate = (folder / relative).resolve()
    if not candidate.is_relative_to(folder.resolve()):
        raise DescriptorError(f"{where}: {relative!r} points outside {folder}")
    if not candidate.exists():
        raise DescriptorError(f"{where}: {relative!r} does not exist in {folder}")
    return candidate.relative_to(folder.resolve()).as_posix()


def _unique_target_names(targets: List[Target], path: Path) -> None:
    seen: Dict[str, int] = {}
    for index, target in enumerate(targets):
        if target.name in seen:
            raise DescriptorError(f"{path}: targets[{index}]: name: {target.name!r} repeats "
                                  f"targets[{seen[target.name]}]")
        seen[target.name] = index


def _sample(folder: Path, candidates: List[Path]):
    """The folder's JSON sample input, if it has one (seed 000 folders often do not:
    import then registers without a sample run and says so)."""
    for candidate in candidates:
        if candidate.exists():
            return read_sample(candidate)
    return None, ""


def read_sample(path: Path):
    """(the parsed JSON, the file's name); ``DescriptorError`` naming the file otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), path.name
    except OSError as exc:
        raise DescriptorError(f"{path}: cannot read the sample input ({exc.strerror})") from exc
    except ValueError as exc:
        raise DescriptorError(f"{path}: not valid JSON ({exc})") from exc


def _requirements(folder: Path, name: Optional[str] = None) -> Tuple[str, ...]:
    path = folder / (name or "requirements.txt")
    if not path.exists():
        if name:
            raise DescriptorError(f"{folder}: requirements: {name!r} does not exist")
        return ()
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise DescriptorError(f"{path}:{number}: pip options ({line.split()[0]}) are not "
                                  "supported; list package requirements only")
        lines.append(line)
    return tuple(lines)


__all__ = ["DescriptorError", "ImportSpec", "Target", "read_descriptor"]
