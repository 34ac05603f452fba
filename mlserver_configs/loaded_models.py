"""Pyfunc models loaded in this MLServer process, shared by runtimes of one version.

See runtime.py for why: MLServer reloads every version of a model whenever its folder
is re-read, and a registered version never changes, so loading it twice is waste.

A registered version is downloaded into a folder of its own and its files checked
against the manifest recorded at registration (``pyfunc_models/integrity.py``) before
MLflow reads any of them; the model is then loaded from that verified copy, which is
removed when the last runtime using it unloads.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import mlflow

from mlplatform.pyfunc_models.integrity import (
    MANIFEST_ENV,
    MANIFEST_TAG,
    SIGNATURE_ENV,
    SIGNATURE_TAG,
    VERIFY_KEY_ENV,
    IntegrityError,
    check_record,
    key_from_env,
    verify_files,
)

# models:/<name>/<digits>: a registered version, whose artifacts MLflow never changes.
_PINNED_VERSION = re.compile(r"^models:/([^@]+)/(\d+)$")


logger = logging.getLogger("mlserver")


@dataclass
class _Shared:
    model: object
    users: int
    folder: Optional[str] = None  # the verified copy it was loaded from


def load_verified(model_uri: str, name: str = "", version: str = ""
                  ) -> Tuple[object, Optional[str]]:
    """(the pyfunc, the folder of its verified copy); IntegrityError, nothing loaded, when
    a file differs from the version's manifest or the signature a key requires fails.

    A local folder (a KServe predictor's /mnt/models) is checked against the manifest its
    render put in MANIFEST_ENV, as the registered ``name``/``version`` MLServer serves."""
    key = key_from_env(VERIFY_KEY_ENV)
    pinned = _PINNED_VERSION.match(model_uri)
    if pinned is None:
        rendered = os.environ.get(MANIFEST_ENV)
        if rendered and Path(model_uri).is_dir():
            tags = {MANIFEST_TAG: rendered, SIGNATURE_TAG: os.environ.get(SIGNATURE_ENV, "")}
            verify_files(Path(model_uri), check_record(name, version, tags, key),
                         f"{name}/{version}")
        elif key is not None:
            raise IntegrityError(f"{model_uri} is neither a registered version (models:/NAME/N) "
                                 f"nor a folder with a rendered manifest ({MANIFEST_ENV}): it "
                                 f"cannot be verified, and {VERIFY_KEY_ENV} is set")
        return mlflow.pyfunc.load_model(model_uri), None
    name, version = pinned.groups()
    tags = mlflow.MlflowClient().get_model_version(name, version).tags or {}
    digests = check_record(name, version, tags, key)
    folder = tempfile.mkdtemp(prefix="mlplatform-verified-")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        if digests is None:
            logger.warning(f"{model_uri} was registered without a manifest: loaded unverified "
                           "(register it again to add one)")
        else:
            verify_files(Path(local), digests, f"{name}/{version}")
        return mlflow.pyfunc.load_model(local), folder
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, IntegrityError):
            logger.error(f"Refused to load {model_uri}: {exc}")
        raise


async def _load(model_uri: str, name: str, version: str) -> Tuple[object, Optional[str]]:
    # Operators (and tests) count these lines: one per real load.
    logger.info(f"Loading {model_uri} in a worker thread")
    return await asyncio.to_thread(load_verified, model_uri, name, version)


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

    async def acquire(self, key: Optional[str], model_uri: str, name: str = "",
                      version: str = ""):
        """The loaded pyfunc of ``model_uri``, served as ``name``/``version``."""
        if key is None:
            return (await _load(model_uri, name, version))[0]
        async with self._loading.setdefault(key, asyncio.Lock()):
            shared = self._models.get(key)
            if shared is None:
                model, folder = await _load(model_uri, name, version)
                shared = self._models[key] = _Shared(model, 0, folder)
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
            if shared.folder:
                shutil.rmtree(shared.folder, ignore_errors=True)

    def users(self, key: str) -> int:
        shared = self._models.get(key)
        return shared.users if shared else 0


LOADED = LoadedModels()
