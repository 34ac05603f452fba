"""The job queue's worker inside the gateway: claims Requested jobs, runs each in a
``gateway.run_job`` subprocess, enforces the timeout.

On start-up, jobs left Running by a previous gateway are queued again: their
process died with it, and a restart must lose no job.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from .settings import GatewaySettings
from .store import Store

log = logging.getLogger("mlplatform.gateway")


class JobWorker:
    def __init__(self, store: Store, settings: GatewaySettings):
        self.store, self.settings = store, settings
        self.wake = asyncio.Event()
        self.task: asyncio.Task = None

    async def start(self) -> None:
        requeued = await asyncio.to_thread(self.store.requeue_running)
        if requeued:
            log.info("re-queued %d job(s) left running by a previous gateway", requeued)
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _loop(self) -> None:
        while True:
            job = await asyncio.to_thread(self.store.claim_next)
            if job is None:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=2.0)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._run(job.id)

    async def _run(self, job_id: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mlplatform.gateway.run_job", job_id, env=dict(os.environ),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, errors = await asyncio.wait_for(process.communicate(),
                                               timeout=self.settings.job_timeout)
            if process.returncode:
                log.warning("job %s runner exited %s: %s", job_id, process.returncode,
                            errors.decode(errors="replace")[-2000:])
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            await asyncio.to_thread(self.store.finish, job_id,
                                    error=f"timed out after {self.settings.job_timeout:.0f}s")
        except asyncio.CancelledError:  # gateway stopping: the job is re-queued next start
            process.kill()
            await process.wait()
            raise
        job = await asyncio.to_thread(self.store.job, job_id)
        if job is not None and job.status == "Running":  # the runner died without a verdict
            await asyncio.to_thread(self.store.finish, job_id,
                                    error="the job process ended without a result")
