"""The catalog of models the toolkit can train and register by name.

A model module registers a *build* function with ``@register_model``; the
function trains (if the model needs training) and returns a ``ModelBundle``:
everything ``mlflow.pyfunc.log_model`` needs.  The CLI, the tests and the demo
look models up here, so adding a model is one decorated function.
"""
from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .codec import JsonCodecModel

PACKAGE_DIR = Path(__file__).resolve().parent

# Modules holding the built-in models; imported on first catalog access.
BUILTIN_MODULES = (
    "mlplatform.pyfunc_models.echo",
    "mlplatform.pyfunc_models.fraud.train",
    "mlplatform.pyfunc_models.fraud.retrain",
    "mlplatform.pyfunc_models.images.quantize",
    "mlplatform.pyfunc_models.images.digits",
)

# Distributions every served model needs, pinned to the installed versions so
# that the pickled model loads where it is served.
BASE_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy")


@dataclass(frozen=True)
class BuildContext:
    """What a build function knows about where its result will be logged."""

    workdir: Path  # a private temporary folder for the files the build writes
    model_name: str
    experiment_name: str = ""
    run_id: str = ""


@dataclass
class ModelBundle:
    """What a build produced, ready to be logged to MLflow."""

    python_model: JsonCodecModel
    input_example: Any
    artifacts: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    # Small settings the model reads at load time (``context.model_config``).
    model_config: Dict[str, Any] = field(default_factory=dict)
    # The training inputs (a DataFrame, one column per feature): registration stores their
    # profile beside the model, which the gateway's drift monitor compares live inputs to.
    reference: Any = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[BuildContext], ModelBundle]
    requirements: Tuple[str, ...] = ()
    # Requirement lines taken as written (an imported folder's requirements.txt).
    raw_requirements: Tuple[str, ...] = ()
    # Files outside this package that make up the model (an imported folder).
    source_dir: Optional[Path] = None

    def pip_requirements(self) -> List[str]:
        """Pinned requirements: the distributions the model imports, at installed versions."""
        names = dict.fromkeys(BASE_REQUIREMENTS + self.requirements)
        pinned = [f"{name}=={metadata.version(name)}" for name in names]
        return pinned + [line for line in self.raw_requirements if not _covered(line, names)]

    def fingerprint(self) -> str:
        """A digest of the model code and its library versions.

        Registration skips training when the champion was built from the same
        fingerprint: same code, same libraries, same deterministic data.
        """
        digest = hashlib.sha256(self.name.encode())
        sources = [(PACKAGE_DIR, sorted(PACKAGE_DIR.rglob("*.py")))]
        if self.source_dir is not None:
            sources.append((self.source_dir, sorted(
                p for p in self.source_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)))
        for root, paths in sources:
            for path in paths:
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
        for requirement in self.pip_requirements():
            digest.update(requirement.encode())
        return digest.hexdigest()[:16]


def _covered(line: str, pinned: Dict[str, None]) -> bool:
    """A bare requirement (``numpy``) that one of our exact pins already satisfies.

    A line with a version of its own stays, so pip reports a real conflict.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False
    names = {canonicalize_name(name) for name in pinned}
    return not requirement.specifier and canonicalize_name(requirement.name) in names


_CATALOG: Dict[str, ModelSpec] = {}


def register_model(
    name: str, description: str, requirements: Tuple[str, ...] = ()
) -> Callable[[Callable[[Path], ModelBundle]], Callable[[Path], ModelBundle]]:
    """Decorator: add a build function to the catalog under ``name``."""

    def decorate(build: Callable[[BuildContext], ModelBundle]) -> Callable[[Path], ModelBundle]:
        if name in _CATALOG and _CATALOG[name].build.__qualname__ != build.__qualname__:
            raise ValueError(f"model {name!r} is registered twice")
        _CATALOG[name] = ModelSpec(name, description, build, tuple(requirements))
        return build

    return decorate


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def get_model_spec(name: str) -> ModelSpec:
    _load_builtins()
    try:
        return _CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(_CATALOG))
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def model_specs() -> List[ModelSpec]:
    _load_builtins()
    return [_CATALOG[name] for name in sorted(_CATALOG)]
