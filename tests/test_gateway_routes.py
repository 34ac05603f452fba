"""The gateway's routes in process, with a V2 server and a registry stand-in.

The real-stack tests (test_gateway.py) prove the routes against MLServer; these
pin down the routing rules and the request plumbing deterministically: which
version a call goes to, re-routing after a switch, X-Request-ID, request sharing.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict, List, Optional

import httpx
import pytest
from fastapi.testclient import TestClient

from mlplatform.gateway.app import build, create_app
from mlplatform.gateway.registry import RegisteredModel, VersionFormats
from mlplatform.gateway.settings import GatewaySettings
from mlplatform.gateway.upstream import not_loaded
from mlplatform.pyfunc_models.conventions import SHADOW, RouteRule


class FakeV2:
    """Echo served in the versions of ``loaded``; answers ``{"result": 2a, "v": version}``.

    ``hold``: every infer call waits for it (to let callers pile up deterministically).
    """

    def __init__(self, loaded: Dict[str, List[str]]):
        self.loaded = loaded
        self.calls: List[Dict[str, Any]] = []
        self.hold: Optional[asyncio.Event] = None
        self.index_state = "READY"
        self.index_reads = 0

    async def infer(self, model: str, body: Dict[str, Any], version: Optional[str] = None,
                    request_id: Optional[str] = None) -> Dict[str, Any]:
        self.calls.append({"model": model, "version": version, "request_id": request_id,
                           "documents": body["inputs"][0]["data"],
                           "parameters": body.get("parameters")})
        if self.hold is not None:
            await self.hold.wait()
        if version not in self.loaded.get(model, []):
            raise not_loaded(model, version, "not found")
        data = body["inputs"][0]["data"]
        documents = [json.loads(d) for d in (data if isinstance(data, list) else [data])]
        answers = [json.dumps({"result": 2 * d["a"], "v": version}) for d in documents]
        return {"outputs": [{"name": "output", "datatype": "BYTES", "shape": [len(answers)],
                             "data": answers}]}

    async def index(self) -> List[Dict[str, Any]]:
        self.index_reads += 1
        return [{"name": name, "version": v, "state": self.index_state}
                for name, versions in self.loaded.items() for v in versions]

    async def ready(self, model: Optional[str] = None, version: Optional[str] = None) -> bool:
        return model is None or version in self.loaded.get(model, [])

    async def close(self) -> None:
        pass


class FakeRegistry:
    def __init__(self, served: Optional[str], aliases: Dict[str, str]):
        self.served, self.aliases = served, aliases
        self.params: tuple = ()
        self.route: Optional[RouteRule] = None
        self.profile: Any = None  # the reference profile every version has (None: none)

    async def model(self, name: str) -> Optional[RegisteredModel]:
        return (RegisteredModel(name, self.served, dict(self.aliases), self.route)
                if name == "echo" else None)

    async def formats(self, name: str, version: str) -> VersionFormats:
        return VersionFormats(params=self.params)

    async def input_example(self, name: str, version: str) -> Any:
        return {"a": 10}

    async def reference_profile(self, name: str, version: str) -> Any:
        return self.profile

    async def close(self) -> None:
        pass


@pytest.fixture
def parts(tmp_path):
    settings = GatewaySettings(database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
                               feature_store_url=f"sqlite:///{tmp_path / 'features.db'}",
                               jobs_storage=str(tmp_path / "jobs"), mlserver_grpc="",
                               forward_model="echo")
    upstream = FakeV2({"echo": ["1", "2"]})
    registry = FakeRegistry(served="1", aliases={"champion": "2", "challenger": "2"})
    gateway = build(settings, upstream=upstream, registry=registry)
    return settings, upstream, registry, gateway


@pytest.fixture
def client(parts):
    settings, _, _, gateway = parts
    with TestClient(create_app(settings, gateway)) as test_client:
        yield test_client


def test_a_bare_name_goes_to_the_recorded_version_not_the_alias(client, parts):
    response = client.post("/forward", json={"a": 10})
    assert response.status_code == 200
    assert response.json() == {"result": 20, "v": "1"}
    assert response.headers["x-model-version"] == "1"
    assert parts[1].calls[-1]["version"] == "1"


@pytest.mark.parametrize("reference, version", [("echo@champion", "2"), ("echo/2", "2"),
                                                ("echo/1", "1")])
def test_alias_and_version_references(client, reference, version):
    response = client.post("/forward", params={"model": reference}, json={"a": 1})
    assert response.status_code == 200 and response.headers["x-model-version"] == version


def test_unknown_alias_is_400_and_an_unloaded_version_is_503(client, parts):
    parts[2].aliases["challenger"] = "7"  # registered, never deployed
    response = client.post("/forward", params={"model": "echo@nosuch"}, json={"a": 1})
    assert response.status_code == 400
    assert "has no alias 'nosuch'" in response.json()["detail"]
    response = client.post("/forward", params={"model": "echo@challenger"}, json={"a": 1})
    assert response.status_code == 503
    assert "echo@challenger is version 7, which is not served" in response.json()["detail"]
    bad = client.post("/forward", params={"model": "echo@@x"}, json={"a": 1})
    assert bad.status_code == 400 and "is not NAME, NAME@ALIAS or NAME/VERSION" in bad.json()[
        "detail"]


def test_a_retired_version_is_re_routed_to_the_one_served_now(client, parts):
    _, upstream, registry, _ = parts
    assert client.post("/forward", json={"a": 1}).headers["x-model-version"] == "1"
    upstream.loaded["echo"] = ["2"]  # deploy switched and retired version 1 ...
    registry.served = "2"            # ... after recording version 2 as served
    response = client.post("/forward", json={"a": 5})
    assert response.status_code == 200
    assert response.json() == {"result": 10, "v": "2"}
    assert response.headers["x-model-version"] == "2"
    assert [c["version"] for c in upstream.calls[-2:]] == ["1", "2"]


def test_calls_to_a_retired_version_read_the_index_once_after_the_first_failure(client, parts):
    """Found by bench_switch: an index read just *before* the switch (so not re-read for
    another second) listed only the retired version, and 7 calls in a row got 503."""
    _, upstream, registry, gateway = parts
    upstream.loaded["echo"] = ["1"]
    assert client.post("/forward", json={"a": 1}).headers["x-model-version"] == "1"
    gateway.directory._index = (time.monotonic(), {"echo": {"1"}})  # read a moment ago
    reads = upstream.index_reads
    upstream.loaded["echo"] = ["2"]  # switched; the registry record still says 1
    answers = [client.post("/forward", json={"a": a}) for a in (1, 2, 3)]
    assert [(r.status_code, r.headers["x-model-version"]) for r in answers] == [(200, "2")] * 3
    assert upstream.index_reads == reads + 1


def test_shadow_copies_reach_a_version_loaded_after_the_index_was_read(client, parts):
    """Found in CI: `route` loads the shadow version, then writes the rule; an index read
    before the load made every copy fail for up to REGISTRY_TTL seconds."""
    _, upstream, registry, gateway = parts
    gateway.directory._index = (time.monotonic(), {"echo": {"1"}})  # read before the load
    registry.route = RouteRule(SHADOW, "challenger", "2", 100.0)
    for a in (1, 2, 3):
        assert client.post("/forward", json={"a": a}).headers["x-model-version"] == "1"
    deadline = time.monotonic() + 30  # a bound for a hang, not a measurement
    while True:
        report = client.get("/models/echo/shadow").json()
        if report["answered"] + report["errors"] == 3:
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.05)
    assert (report["answered"], report["errors"]) == (3, 0), report
    assert {c["version"] for c in upstream.calls} == {"1", "2"}


def test_a_pinned_version_is_never_re_routed(client, parts):
    parts[1].loaded["echo"] = ["2"]
    parts[3].directory._index = (float("inf"), {"echo": {"1", "2"}})  # index not yet refreshed
    response = client.post("/forward", params={"model": "echo/1"}, json={"a": 1})
    assert response.status_code == 503 and "echo version 1 is not loaded" in response.json()[
        "detail"]


def test_request_id_is_accepted_returned_and_passed_to_the_model_server(client, parts):
    response = client.post("/forward", json={"a": 1}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert parts[1].calls[-1]["request_id"] == "abc-123"
    generated = client.post("/forward", json={"a": 1}).headers["x-request-id"]
    again = client.post("/forward", json={"a": 1}).headers["x-request-id"]
    assert generated != again and parts[1].calls[-2]["request_id"] == generated
    assert client.get("/health").headers["x-request-id"]  # on every answer, errors too
    assert client.post("/forward", content=b"{").headers["x-request-id"]
    refused = client.post("/forward", json={"a": 1}, headers={"X-Request-ID": "has spaces"})
    assert refused.headers["x-request-id"] != "has spaces"  # replaced, not echoed as given


def test_openapi_examples_come_from_the_registered_input_example(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/forward"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["registered"]["value"] == {"a": 10}


def test_callers_queued_behind_calls_in_flight_share_one_request(parts):
    """Deterministic sharing: the stand-in holds every call until the burst is queued."""
    settings, upstream, _, gateway = parts
    app = create_app(settings, gateway)
    callers = 8

    async def main():
        upstream.hold = asyncio.Event()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            tasks = [asyncio.create_task(http.post("/forward", json={"a": n}))
                     for n in range(callers)]
            lane = None
            for _ in range(100_000):  # bounded: event-loop turns, not seconds
                lane = gateway.coalescer._lanes.get(("echo", "1"))
                if lane is not None and len(lane.pending) == callers - 2:  # 2 in flight
                    break
                await asyncio.sleep(0)
            else:
                pytest.fail("the burst never queued behind the calls in flight")
            assert len(upstream.calls) == 2
            upstream.hold.set()
            return await asyncio.gather(*tasks)

    answers = asyncio.run(main())
    assert [a.json()["result"] for a in answers] == [2 * n for n in range(callers)]
    assert [len(c["documents"]) if isinstance(c["documents"], list) else 1
            for c in upstream.calls] == [1, 1, callers - 2]


def test_a_zip_that_lies_about_its_size_is_stopped_while_inflating():
    """Counted as it inflates, 1 MB at a time: memory stays near the limit, whatever the
    headers say (tracemalloc: allocations, not time)."""
    import tracemalloc

    from mlplatform.gateway import batch
    from mlplatform.gateway.errors import BadRequest
    from tests.zips import lying_zip

    bomb = lying_zip(actual_bytes=64 * 1024 * 1024, declared_bytes=1000)
    assert len(bomb) < 200_000
    tracemalloc.start()
    try:
        # Inflated 1 MB at a time, the entry stops at its declared 1,000 bytes, whose
        # checksum then fails: a 400 naming the entry, and never 64 MB in memory.
        with pytest.raises(BadRequest, match="zip entry 'bomb.png' cannot be read: Bad CRC"):
            batch.read_zip(bomb, "bomb.zip", batch.ZipLimits(8 * 1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * 1024 * 1024, peak


def test_an_honest_zip_over_the_limit_is_413_before_inflating():
    from mlplatform.gateway import batch
    from mlplatform.gateway.errors import TooLarge
    from tests.zips import zip_of

    honest = zip_of([("a.png", bytes(5_000_000)), ("b.png", bytes(5_000_000))])
    with pytest.raises(TooLarge, match="unpacks to more than the gateway accepts"):
        batch.read_zip(honest, "big.zip", batch.ZipLimits(8 * 1024 * 1024))


def test_a_zip_of_300000_entries_is_413_before_its_directory_is_parsed():
    """ZipFile() would build 300,000 ZipInfo objects (~1 GB) before any limit applied: the
    count is read from the ZIP64 end record first (tracemalloc: allocations, not time)."""
    import tracemalloc

    from mlplatform.gateway import batch
    from mlplatform.gateway.errors import TooLarge
    from tests.zips import many_entries_zip

    crowded = many_entries_zip(300_000)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge) as raised:
            batch.read_zip(crowded, "many.zip", batch.ZipLimits(64 * 1024 * 1024, 10_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.detail == ("zip 'many.zip' declares 300000 entries; the gateway takes "
                                   "at most 10000 (MLPLATFORM_GATEWAY_MAX_ZIP_ENTRIES)")
    assert raised.value.extra == {"limit_entries": 10_000}
    assert peak < 1024 * 1024, peak


def test_a_zip_whose_end_record_hides_its_entries_is_413_too():
    """zipfile walks the directory by its size, whatever count the end record declares."""
    from mlplatform.gateway import batch
    from mlplatform.gateway.errors import TooLarge
    from tests.zips import many_entries_zip

    liar = many_entries_zip(20_000, declared=1)
    with pytest.raises(TooLarge, match="holds more than 100 entries; the gateway takes at "
                                       "most 100"):
        batch.read_zip(liar, "liar.zip", batch.ZipLimits(64 * 1024 * 1024, 100))


def test_a_zip_at_the_entry_limit_is_read():
    from mlplatform.gateway import batch
    from mlplatform.gateway.zip_directory import check_entries, end_records
    from tests.zips import many_entries_zip, zip_of

    check_entries(many_entries_zip(100), 100)                  # exactly the limit: fine
    check_entries(many_entries_zip(70_000), 70_000)            # ZIP64 records, at the limit
    assert end_records(b"not a zip") is None
    images = zip_of([(f"{n}.png", b"x") for n in range(3)])
    archive = batch.read_zip(images, "ok.zip", batch.ZipLimits(1024 * 1024, 3))
    assert [name for name, _ in archive.entries] == ["0.png", "1.png", "2.png"]


def test_x_param_headers_reach_models_that_take_them_and_are_refused_otherwise(client, parts):
    refused = client.post("/forward", json={"a": 1}, headers={"X-Param-colours": "4"})
    assert refused.status_code == 400
    assert refused.json()["detail"] == ("model 'echo' takes no parameter(s) colours "
                                        "(X-Param-* headers); it takes: none")
    parts[2].params = ("target",)
    parts[3].directory._formats.clear()
    taken = client.post("/forward", json={"a": 1}, headers={"X-Param-target": "Scoring"})
    assert taken.status_code == 200
    assert parts[1].calls[-1]["parameters"] == {"target": "Scoring"}


def test_the_served_version_answers_while_a_deploy_loads_another(client, parts):
    """MLServer's index gives one state per model name, that of its highest version: while
    deploy loads version 2 beside the served version 1, it says "not ready" for both.  The
    gateway calls the recorded version without asking the index (a real-stack failure)."""
    _, upstream, registry, _ = parts
    upstream.index_state = "UNKNOWN"  # version 2 loading
    assert client.post("/forward", json={"a": 1}).json() == {"result": 2, "v": "1"}
    ready = client.get("/ready").json()
    assert ready["models"]["echo"] is True
