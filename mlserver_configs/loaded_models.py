"""Pyfunc models loaded in this MLServer process, shared by runtimes of one version.

See runtime.py for why: MLServer reloads every version of a model whenever its folder
is re-read, and a registered version never changes, so loading it twice is waste.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Dict, Optional

import mlflow

# models:/<name>/<digits>: a registered version, whose artifacts MLflow never changes.
_PINNED_VERSION = re.compile(r"^models:/[^@]+/\d+$")


logger = logging.getLogger("mlserver")


@dataclass
class _Shared:
    model: object
    users: int


async def _load(model_uri: str):
    # Operators (and tests) count these lines: one per real load.
    logger.info(f"Loading {model_uri} in a worker thread")
    return await asyncio.to_thread(mlflow.pyfunc.load_model, model_uri)


class LoadedModels:
    """Pyfunc models loaded in this process, shared by runtimes with the same key."""

    def __init__(self):
        self._models: Dict[str, _Shared] = {}
        self._loading: Dict[str, asyncio.Lock] = {}

    @staticmethod
    def key(model_uri: str) -> Optional[str]:
        # ``mlflow.pyfunc.load_model`` depends on the URI alone; the settings MLServer
        # derives from the model (inputs, outputs) are set on each runtime by itself.
        return model_uri if _PINNED_VERSION.match(model_uri) else None

    async def acquire(self, key: Optional[str], model_uri: str):
        if key is None:
            return await _load(model_uri)
        async with self._loading.setdefault(key, asyncio.Lock()):
            shared = self._models.get(key)
            if shared is None:
                shared = self._models[key] = _Shared(await _load(model_uri), 0)
            else:
                logger.info(f"Reusing the loaded {model_uri} (not loading it again)")
            shared.users += 1
            return shared.model

    def release(self, key: Optional[str]) -> None:
        shared = self._models.get(key) if key is not None else None
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del self._models[key]
            self._loading.pop(key, None)

    def users(self, key: str) -> int:
        shared = self._models.get(key)
        return shared.users if shared else 0


LOADED = LoadedModels()
