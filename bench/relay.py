"""The floor of any Python HTTP hop: a bare ASGI relay, no framework, no checks.

It forwards the request body as the one document of a V2 request to
``RELAY_TARGET`` (a ``/v2/models/<name>/infer`` URL) through one pooled aiohttp
session and returns the answer's document.  ``bench_gateway.py`` measures it
beside the gateway to show how much of the gateway's cost is the hop itself.
Not for use: no error handling, no limits.
"""
from __future__ import annotations

import os

import aiohttp
import orjson

TARGET = os.environ.get("RELAY_TARGET", "")
_session = None


async def app(scope, receive, send):
    global _session
    if scope["type"] != "http":
        return
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    request = {"inputs": [{"name": "relay", "shape": [1], "datatype": "BYTES",
                           "data": [body.decode()]}]}
    async with _session.post(TARGET, data=orjson.dumps(request),
                             headers={"content-type": "application/json"}) as response:
        status, answer = response.status, orjson.loads(await response.read())
    content = answer["outputs"][0]["data"][0].encode() if status == 200 else orjson.dumps(answer)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": content})
