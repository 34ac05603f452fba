"""``DirectRoute``: a FastAPI route whose endpoint takes only the ``Request`` and returns
a ``Response``, called without FastAPI's per-request dependency solving.

Why: on /forward, solving the dependencies of an endpoint whose only parameter is
the request was still ~10 % of the gateway's own time per call (cProfile, fastapi
0.115), and parameters declared the FastAPI way (``model: Optional[str] =
Query(None)``) cost ~40 % more.  The route stays a normal ``APIRoute`` for the
OpenAPI document; a route with dependencies (closed predict routes need a token)
is solved the normal way.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Coroutine

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        parameters = list(inspect.signature(self.endpoint).parameters)
        if self.dependencies or parameters != ["request"]:
            return super().get_route_handler()
        return self.endpoint
