"""The served form of an imported folder: its targets behind the JSON codec.

JsonToJson (MMF) and Sync (Neomaril) targets answer V2 requests; pick one with
the request parameter ``target`` (default: the first).  FileToFile / Async and
FileToArtifact targets run on files through ``run_file`` (``mlplatform run``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..codec import JsonCodecModel
from ..errors import ModelInputError
from ..wire import to_json
from .descriptors import ImportSpec, Target
from .usercode import inside, load_function

BUNDLE_ARTIFACT = "bundle"


class ImportedModel(JsonCodecModel):
    accepted_params = ("target",)  # which JsonToJson target answers (default: the first)

    def __init__(self) -> None:
        self.spec: Optional[ImportSpec] = None
        self.folder: Optional[Path] = None
        self.functions: Dict[str, Callable] = {}

    def load_context(self, context) -> None:
        self.attach(ImportSpec.from_config(context.model_config),
                    Path(context.artifacts[BUNDLE_ARTIFACT]))

    def attach(self, spec: ImportSpec, folder: Path) -> "ImportedModel":
        """Import every target's function from ``folder`` (the user's files)."""
        self.spec, self.folder = spec, folder.resolve()
        self.functions = {t.name: load_function(self.folder, t.module, t.function)
                          for t in spec.targets}
        return self

    def target(self, wanted: Optional[str], task_types: Tuple[str, ...]) -> Target:
        candidates = [t for t in self.spec.targets if t.task_type in task_types]
        if wanted is None:
            if not candidates:
                raise ModelInputError(f"this model has no {' or '.join(task_types)} target")
            return candidates[0]
        for target in self.spec.targets:
            if target.matches(str(wanted)):
                if target.task_type not in task_types:
                    raise ModelInputError(
                        f"target {wanted!r} is {target.task_type}; expected {' or '.join(task_types)}")
                return target
        names = ", ".join(repr(t.name) for t in self.spec.targets)
        raise ModelInputError(f"no target {wanted!r}; targets: {names}")

    def score_documents(self, documents: List[Any], params: Dict[str, Any]) -> List[Any]:
        target = self.target(params.get("target"), ("JsonToJson",))
        return [self.call_json(target, document) for document in documents]

    def call_json(self, target: Target, data: Any) -> Any:
        """Call a JSON target the way its convention expects; the answer as plain JSON."""
        function = self.functions[target.name]
        try:
            with inside(self.folder):
                if target.convention == "neomaril":  # score(data: JSON string, base_path)
                    result = function(json.dumps(data), str(self.folder))
                else:                                # MMF: score(data: dict)
                    result = function(data)
        except ModelInputError:
            raise
        except Exception as exc:
            raise ModelInputError(f"{target.name}: the model code failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        if isinstance(result, (str, bytes)) and target.convention == "neomaril":
            try:
                result = json.loads(result)
            except ValueError as exc:
                raise ModelInputError(f"{target.name}: returned a string that is not JSON") from exc
        try:
            return json.loads(to_json(result))
        except (TypeError, ValueError) as exc:
            raise ModelInputError(f"{target.name}: returned {type(result).__name__}, which is "
                                  f"not JSON-serialisable ({exc})") from exc

    def run_file(self, wanted: Optional[str], input_file: Path, output_dir: Path) -> Path:
        """Run a file target; returns the output file (FileToFile) or the updated folder."""
        target = self.target(wanted, ("FileToFile", "FileToArtifact"))
        function = self.functions[target.name]
        input_file = input_file.resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        try:
            if target.task_type == "FileToArtifact":
                with inside(self.folder):
                    function(str(input_file))
                return self.folder
            if target.convention == "neomaril":
                return self._run_async(function, input_file, output_dir)
            with inside(self.folder):
                result = function(str(input_file))
        except Exception as exc:
            raise ModelInputError(f"{target.name}: the model code failed on {input_file.name}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return _deliver(result, input_file, output_dir, target.name, base=self.folder)

    def _run_async(self, function: Callable, input_file: Path, output_dir: Path) -> Path:
        """Neomaril Async: ``score(data_path, model_path)``; the input sits in ``data_path``."""
        with tempfile.TemporaryDirectory(prefix="mlplatform-run-") as execution:
            shutil.copy2(input_file, Path(execution) / input_file.name)
            previous = os.environ.get("inputFileName")
            os.environ["inputFileName"] = input_file.name
            try:
                with inside(self.folder):
                    result = function(execution, str(self.folder))
            finally:
                if previous is None:
                    os.environ.pop("inputFileName", None)
                else:
                    os.environ["inputFileName"] = previous
            return _deliver(result, input_file, output_dir, "score", base=Path(execution))


def _deliver(result: Any, input_file: Path, output_dir: Path, target: str, base: Path) -> Path:
    """Copy the file the function produced (or write the bytes it returned) to ``output_dir``.

    A relative path is relative to ``base``, the working directory the function ran in.
    """
    if isinstance(result, (bytes, bytearray)):
        destination = output_dir / f"{input_file.stem}.out{input_file.suffix}"
        destination.write_bytes(result)
        return destination
    produced = base / result if isinstance(result, (str, os.PathLike)) else None
    if produced is not None and produced.is_file():
        destination = output_dir / produced.name
        if produced.resolve() != destination.resolve():
            shutil.copy2(produced, destination)
        return destination
    raise ModelInputError(f"{target}: expected the path of the output file (or its bytes), "
                          f"got {result!r}")
