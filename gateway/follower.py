"""Aliases moved anywhere (the MLflow UI, ``MlflowClient.set_registered_model_alias``,
``mlplatform register --alias champion``) are served within ``ALIAS_POLL`` seconds.

Every ``alias_poll`` seconds the gateway reads, for each model it has a served
record of, where ``follow_alias`` (``champion``) points; when that is another
version, it deploys it the zero-failure way (``mlserver_configs.serving``: load
beside, switch once it answers, retire the old).  Models never deployed by the
toolkit are left alone; a version that fails to load is logged and not tried
again until the alias moves.  ``alias_poll = 0`` turns following off.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Set, Tuple

from .background import Background
from .context import Gateway
from .registry import RegistryUnavailable

log = logging.getLogger("mlplatform.gateway")


class AliasFollower(Background):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.settings = gateway.settings
        self.refused: Set[Tuple[str, str]] = set()

    def enabled(self) -> bool:
        return self.settings.alias_poll > 0 and bool(self.settings.mlserver_repository)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alias_poll)
            try:
                await self.follow()
            except Exception:  # never let one bad round stop following
                log.exception("following the %s alias failed this round",
                              self.settings.follow_alias)

    async def follow(self) -> None:
        directory = self.gateway.directory
        for name in await directory.served_names():
            try:
                record = await self.gateway.registry.model(name)
            except RegistryUnavailable:
                return  # MLflow down: nothing to follow, the served versions go on
            if record is None or record.served is None:
                continue
            wanted = record.aliases.get(self.settings.follow_alias)
            if not wanted or wanted == record.served or (name, wanted) in self.refused:
                continue
            await self._deploy(name, wanted, record.served)

    async def _deploy(self, name: str, version: str, served: str) -> None:
        from .lifecycle import serving_of

        log.info("%s@%s moved to version %s (served: %s): deploying it", name,
                 self.settings.follow_alias, version, served)
        async with self.gateway.switching[name]:
            serving = serving_of(self.settings)
            outcome = await asyncio.to_thread(serving.follow, name, self.settings.follow_alias)
        self.gateway.directory.forget(name)
        if outcome is None:  # a promote elsewhere had moved both meanwhile
            return
        if outcome.ok:
            log.info("%s", outcome.describe())
        else:
            self.refused.add((name, outcome.version or version))
            self.gateway.monitoring.metrics.refused(name, outcome.message)
            log.warning("%s@%s -> version %s not deployed: %s", name, self.settings.follow_alias,
                        version, outcome.message)
