"""A loop that runs beside the app, started and stopped with it (job worker, alias follower)."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Optional


class Background:
    task: Optional[asyncio.Task] = None

    def enabled(self) -> bool:
        return True

    async def start(self) -> None:
        if self.enabled():
            self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _loop(self) -> None:
        raise NotImplementedError
