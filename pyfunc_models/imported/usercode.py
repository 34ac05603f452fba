"""Import and call a data scientist's plain functions from their own folder.

Their code is written to run from its folder: MMF's ``main.py`` opens
``model`` with a relative path at import time, and imports its siblings
(``from train import ...``).  So imports and calls happen with the folder as
the working directory and first on ``sys.path``.  The modules loaded from the
folder are then taken out of ``sys.modules`` (the functions keep them alive), so
two imported models that both have a ``main.py`` do not collide.

The working directory is process-wide: fine for MLServer's single-threaded
inference loop and the CLI, which is where this runs.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterator


class UserCodeError(RuntimeError):
    """The user's code could not be imported; the message names the module and why."""


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run with ``folder`` as working directory and first on ``sys.path``."""
    previous = os.getcwd()
    sys.path.insert(0, str(folder))
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def load_function(folder: Path, module: str, function: str) -> Callable:
    folder = folder.resolve()
    # A module of the same name loaded from elsewhere (another model's ``main``) must not
    # be returned instead of this folder's: set it aside while importing.
    parts = module.split(".")
    shadowed = {name: sys.modules.pop(name) for name in
                (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if name in sys.modules}
    before = set(sys.modules)
    try:
        with inside(folder):
            loaded = importlib.import_module(module)
    except Exception as exc:  # any error in user code at import time
        raise UserCodeError(f"{module}.{function}: importing {module} failed: "
                            f"{type(exc).__name__}: {exc}") from exc
    finally:
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin and Path(origin).resolve().is_relative_to(folder):
                del sys.modules[name]
        sys.modules.update(shadowed)
    target = getattr(loaded, function, None)
    if not callable(target):
        raise UserCodeError(f"{module}.{function}: {module} has no function {function!r}")
    return target
