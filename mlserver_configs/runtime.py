"""MLServer's MLflow runtime, loading models off the event loop and only once.

Two things in ``mlserver_mlflow.MLflowRuntime`` hurt the served version while another
version of the same model is loaded or retired (measured under 150 req/s by
bench/bench_switch.py, 2 cores):

* ``load`` calls ``mlflow.pyfunc.load_model`` inside MLServer's event loop, so while
  a version loads (download, unpickle, ONNX session) every request of every model
  waits: p99 went from 5.5 ms to ~475 ms during each deploy.  Here the load runs in
  a worker thread.
* MLServer's repository ``load(name)`` re-reads the model's folder and *reloads every
  version it finds* (``registry.SingleModelRegistry.load`` → ``_reload_model``): loading
  version 2 beside version 1 loads version 1 again, and retiring version 1 loads
  version 2 again.  A deploy cost three model loads, two of them of the version that
  is answering traffic.  A registered model version is immutable in MLflow, so a
  runtime whose ``models:/<name>/<version>`` is already loaded in this process takes
  the loaded pyfunc instead of loading it again (counted, released on unload).

Anything else -- an alias URI, a run or a local path -- loads as MLServer would.
Everything else is MLServer's.
"""
from __future__ import annotations

from typing import Optional

from mlserver.errors import MLServerError
from mlserver.utils import get_model_uri
from mlserver_mlflow import MLflowRuntime

# MLServer re-imports (importlib.reload) an implementation's module before every load,
# so what must outlive one load -- the loaded models -- lives in a module of its own.
from mlplatform.mlserver_configs.loaded_models import LOADED

REASON_CHARS = 500  # an MLflow error can quote a whole directory listing


class ThreadLoadingMLflowRuntime(MLflowRuntime):
    _shared_key: Optional[str] = None

    async def load(self) -> bool:
        model_uri = await get_model_uri(self._settings)
        key = LOADED.key(model_uri)
        try:
            self._model = await LOADED.acquire(key, model_uri, self._settings.name,
                                               str(self._settings.parameters.version or ""))
        except Exception as exc:
            # MLServer answers a failed load with a bare "Internal Server Error"; its
            # own error type reaches the caller of the repository API with the reason.
            raise MLServerError(f"could not load {model_uri}: {type(exc).__name__}: "
                                f"{str(exc)[:REASON_CHARS]}", status_code=500) from exc
        self._shared_key = key
        self._input_schema = self._model.metadata.get_input_schema()
        self._signature = self._model.metadata.signature
        self._sync_metadata()
        return True

    async def unload(self) -> bool:
        LOADED.release(self._shared_key)
        self._shared_key = None
        return await super().unload()
