"""The request being answered, for what is recorded of it (``monitoring.py``)."""
from __future__ import annotations

import contextvars
from typing import Optional, Tuple

# (time.perf_counter() at arrival, path); set by request_id.RequestIdMiddleware.
REQUEST: contextvars.ContextVar[Optional[Tuple[float, str]]] = contextvars.ContextVar(
    "monitored_request", default=None)
# (model, version) the request was resolved to, once it is: error answers name it too.
SERVED: contextvars.ContextVar[Optional[Tuple[str, str]]] = contextvars.ContextVar(
    "served_model", default=None)
