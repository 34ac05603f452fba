"""Which model version a request goes to, and how to talk to it.

* ``NAME``: the version the serving target serves, as recorded in the registry
  by ``mlserver_configs.serving`` -- never an alias that MLServer has not loaded.
  Without a record (a model loaded by hand, or MLflow unreachable before
  anything was cached) the highest loaded version, as MLServer itself would.
* ``NAME@ALIAS``: the version the alias points to, if that version is loaded.
* ``NAME/VERSION``: that version, if loaded.

What is loaded comes from the V2 server's repository index; records, aliases
and wire formats from the registry.  Everything is cached: a record older than
``ttl`` is refreshed in the background while the cached one keeps answering, so
an MLflow outage costs the predict path nothing once a model has been seen.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from mlplatform.pyfunc_models.conventions import ModelReference, ModelReferenceError, RouteRule

from .request_context import SERVED
from .errors import BadRequest, Unavailable
from .registry import RegisteredModel, RegistryReader, RegistryUnavailable, VersionFormats
from .upstream import V2Upstream

log = logging.getLogger("mlplatform.gateway")
RETIRED_KEPT = 64
INDEX_MIN_INTERVAL = 1.0  # seconds between lookups forced by unknown names or aliases


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: Optional[str]       # None: the server's unversioned endpoint
    alias: Optional[str] = None  # how it was asked for, if by alias
    input_format: str = "json"
    output_format: str = "json"
    run_id: str = ""
    accepts_table: bool = False
    pinned: bool = False         # asked for by version or alias: never re-routed
    params: tuple = ()           # request parameters it takes (X-Param-* headers)


class ModelDirectory:
    def __init__(self, upstream: V2Upstream, registry: RegistryReader, ttl: float = 10.0):
        self.upstream = upstream
        self.registry = registry
        self.ttl = ttl
        self._index: Tuple[float, Dict[str, Set[Optional[str]]]] = (0.0, {})
        self._models: Dict[str, Tuple[float, Optional[RegisteredModel]]] = {}
        self._formats: Dict[Tuple[str, str], VersionFormats] = {}
        self._refreshing: Set[str] = set()
        self._index_lock = asyncio.Lock()
        self._retired: Dict[Tuple[str, Optional[str]], float] = {}  # first seen gone

    # ------------------------------------------------------------ what is loaded

    async def loaded(self, refresh: bool = False,
                     asked_after: Optional[float] = None) -> Dict[str, Set[Optional[str]]]:
        """Model name -> versions the V2 server has READY.

        ``asked_after`` (a ``time.monotonic()``): the answer must come from an index
        request sent after that moment -- concurrent callers share one request."""
        stamp, index = self._index
        age = time.monotonic() - stamp
        if asked_after is not None:
            if stamp < asked_after:
                async with self._index_lock:
                    if self._index[0] < asked_after:  # nobody asked since: ask now
                        await self._read_index()
                return self._index[1]
        elif age > self.ttl or (refresh and age > INDEX_MIN_INTERVAL):
            await self._read_index()
            index = self._index[1]
        return index

    async def _read_index(self) -> None:
        asked = time.monotonic()  # stamped when asked: what it says is true from then on
        found: Dict[str, Set[Optional[str]]] = {}
        for entry in await self.upstream.index():
            if entry.get("state") == "READY":
                found.setdefault(entry["name"], set()).add(entry.get("version") or None)
        self._index = (asked, found)

    async def served_names(self) -> List[str]:
        return sorted(await self.loaded())

    def is_stale(self, name: str) -> bool:
        """Whether what is known of ``name`` is older than the refresh interval."""
        cached = self._models.get(name)
        return cached is None or time.monotonic() - cached[0] > self.ttl

    def forget(self, name: str) -> None:
        """Drop what is cached about ``name`` (its served version may just have changed)."""
        self._models.pop(name, None)
        self._index = (0.0, self._index[1])

    async def successor(self, gone: ServedModel) -> ServedModel:
        """Where a call goes when ``gone`` (the served version) was just retired: the
        highest version MLServer has READY now, asked of MLServer itself; the registry
        record is refreshed in the background meanwhile.

        Why not wait for the registry: right after a deploy the MLflow server is busy
        with the deploy's own writes, and re-reading the record took ~1.9 s under 150
        req/s (bench/bench_switch.py) while every call queued behind it."""
        # Any index asked after the first call to ``gone`` failed will do: a burst of
        # failed calls shares one index request.
        now = time.monotonic()
        noticed = self._retired.get((gone.name, gone.version))
        if noticed is None or now - noticed > INDEX_MIN_INTERVAL:
            if len(self._retired) > RETIRED_KEPT:  # one entry per retired version: prune
                self._retired = {key: moment for key, moment in self._retired.items()
                                 if now - moment <= INDEX_MIN_INTERVAL}
            noticed = self._retired[(gone.name, gone.version)] = now
        cached = self._models.get(gone.name)
        if cached is not None:  # stale now: the next lookup refreshes it in the background
            self._models[gone.name] = (0.0, cached[1])
        # An index read before the call failed may still list ``gone`` (or not yet its
        # successor): bench_switch lost 7 calls in a row to a throttled, older one.
        loaded = await self.loaded(asked_after=noticed)
        others = (loaded.get(gone.name) or set()) - {gone.version}
        if not others:
            return await self.resolve(gone.name)
        record = cached[1] if cached is not None else None
        version = (record.served if record is not None and record.served in others
                   else max(others, key=_version_order))
        return await self._served(ModelReference(gone.name), version)

    # ------------------------------------------------------------ resolving

    async def resolve(self, reference: str, default: bool = False) -> ServedModel:
        """The model a request names (``default``: the route's own model, from settings)."""
        try:
            wanted = _parse(reference)
        except ModelReferenceError as exc:
            raise BadRequest(str(exc), field="model") from exc
        if not (wanted.alias or wanted.version):
            record = await self._record(wanted.name)
            if record is not None and record.served:
                # The recorded version goes straight to the model server, without its
                # repository index: MLServer reports one state per model *name* (that of
                # its highest version), so while deploy loads a new version beside the
                # served one, the index shows the name as not ready.
                return await self._served(wanted, record.served)
        loaded = await self.loaded()
        if wanted.name not in loaded:
            loaded = await self.loaded(refresh=True)  # maybe just deployed
        versions = loaded.get(wanted.name)
        if not versions:
            await self._not_served(wanted.name, loaded, default)
        version = await self._version(wanted, versions)
        if version not in versions:  # maybe loaded since the index was read (deploy, route)
            versions = (await self.loaded(refresh=True)).get(wanted.name) or set()
        if version not in versions:
            how = f"@{wanted.alias} is version {version}" if wanted.alias else f"/{version}"
            raise Unavailable(f"{wanted.name}{how}, which is not served (served: "
                              f"{', '.join(sorted(v or '-' for v in versions))}); run "
                              f"`mlplatform deploy --model {wanted}` to serve it")
        return await self._served(wanted, version)

    async def rule(self, name: str) -> Optional[RouteRule]:
        """The model's canary or shadow rule, from its cached registry record."""
        record = await self._record(name)
        return record.route if record is not None else None

    async def _served(self, wanted: ModelReference, version: Optional[str]) -> ServedModel:
        formats = await self._formats_of(wanted.name, version)
        # the request's model, so an error answer still says which (errors.py, the metrics)
        SERVED.set((wanted.name, version or ""))
        return ServedModel(wanted.name, version, wanted.alias, formats.input_format,
                           formats.output_format, formats.run_id, formats.accepts_table,
                           pinned=bool(wanted.alias or wanted.version), params=formats.params)

    async def _not_served(self, name: str, loaded: Dict[str, Set[Optional[str]]],
                          default: bool) -> None:
        """503 for a model that exists but is not loaded (not deployed yet, the server
        reloading, the route's own model missing); 400 for a name nobody knows."""
        served = ", ".join(sorted(loaded)) or "none"
        deploy = f"run `mlplatform deploy --model {name}`"
        if default:
            raise Unavailable(f"this route's model {name!r} is not served (served: {served}); "
                              f"{deploy}")
        try:
            registered = await self.registry.model(name) is not None
        except RegistryUnavailable as exc:
            raise Unavailable(f"model {name!r} is not served (served: {served}) and the "
                              f"registry cannot be read to tell whether it exists ({exc})") from exc
        if registered:
            raise Unavailable(f"model {name!r} is registered but not served (served: "
                              f"{served}); {deploy}")
        raise BadRequest(f"unknown model {name!r}; served models: {served}", field="model")

    async def _version(self, wanted: ModelReference, versions: Set[Optional[str]]) -> Optional[str]:
        if wanted.version:
            return wanted.version
        record = await self._record(wanted.name)
        if wanted.alias and (record is None or record.aliases.get(wanted.alias) not in versions):
            record = await self._record(wanted.name, fresh=True)  # maybe just set or moved
        if wanted.alias:
            if record is None:
                raise Unavailable(f"the model registry cannot be read, so alias "
                                  f"{wanted.alias!r} cannot be resolved")
            if wanted.alias not in record.aliases:
                raise BadRequest(f"model {wanted.name!r} has no alias {wanted.alias!r} "
                                 f"(aliases: {', '.join(sorted(record.aliases)) or 'none'})",
                                 field="model")
            return record.aliases[wanted.alias]
        if record is not None and record.served in versions:
            return record.served
        return max(versions, key=_version_order)  # what MLServer's unversioned call uses

    async def _record(self, name: str, fresh: bool = False) -> Optional[RegisteredModel]:
        """The registry's record of ``name``: cached, refreshed in the background; with
        ``fresh``, read now unless read in the last second."""
        cached = self._models.get(name)
        if fresh and (cached is None or time.monotonic() - cached[0] > INDEX_MIN_INTERVAL):
            await self._refresh(name)
            cached = self._models.get(name)
        if cached is not None:
            if time.monotonic() - cached[0] > self.ttl and name not in self._refreshing:
                self._refreshing.add(name)
                asyncio.get_running_loop().create_task(self._refresh(name))
            return cached[1]
        await self._refresh(name)
        cached = self._models.get(name)
        return cached[1] if cached else None

    async def _refresh(self, name: str) -> None:
        try:
            self._models[name] = (time.monotonic(), await self.registry.model(name))
        except RegistryUnavailable as exc:
            log.warning("registry lookup of %s failed (%s); using what is cached", name, exc)
        finally:
            self._refreshing.discard(name)

    async def _formats_of(self, name: str, version: Optional[str]) -> VersionFormats:
        if version is None:
            return VersionFormats()
        key = (name, version)
        if key not in self._formats:
            try:
                found = await self.registry.formats(name, version)
            except RegistryUnavailable as exc:
                raise Unavailable(f"the model registry cannot be read to learn how to call "
                                  f"{name} version {version} ({exc})") from exc
            self._formats[key] = found or VersionFormats()  # a version's tags do not change
        return self._formats[key]


@functools.lru_cache(maxsize=1024)  # the same few references on every call: parse once
def _parse(reference: str) -> ModelReference:
    return ModelReference.parse(reference, default_alias=None)


def _version_order(version: Optional[str]) -> Tuple[int, str]:
    text = version or ""
    return (int(text), "") if text.isdigit() else (-1, text)
