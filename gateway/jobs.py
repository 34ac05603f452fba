"""The job queue's worker inside the gateway: leases jobs, runs each in a
``gateway.run_job`` subprocess, renews the lease while it runs, enforces the timeout.

A job is leased for ``job_lease`` seconds and the lease renewed every third of
that while its runner lives.  A gateway that dies stops renewing: once the lease
expires any gateway on the same database takes the job over (and logs it).  A
second gateway starting on the database takes over nothing that is still leased,
so no job runs twice.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import uuid

from .background import Background
from .settings import GatewaySettings
from .store import Store

log = logging.getLogger("mlplatform.gateway")


class JobWorker(Background):
    def __init__(self, store: Store, settings: GatewaySettings):
        self.store, self.settings = store, settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()

    async def _loop(self) -> None:
        while True:
            job = await asyncio.to_thread(self.store.claim_next, self.owner,
                                          self.settings.job_lease)
            if job is None:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=2.0)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._run(job.id)

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease / 3)
            if not await asyncio.to_thread(self.store.heartbeat, job_id, self.owner,
                                           self.settings.job_lease):
                log.warning("job %s: lease lost (another gateway took it over)", job_id)
                return

    async def _run(self, job_id: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mlplatform.gateway.run_job", job_id, self.owner,
            env=dict(os.environ), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        beating = asyncio.create_task(self._heartbeat(job_id))
        try:
            await self._wait(job_id, process)
        finally:
            beating.cancel()

    async def _wait(self, job_id: str, process) -> None:
        try:
            _, errors = await asyncio.wait_for(process.communicate(),
                                               timeout=self.settings.job_timeout)
            if process.returncode:
                log.warning("job %s runner exited %s: %s", job_id, process.returncode,
                            errors.decode(errors="replace")[-2000:])
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            await asyncio.to_thread(self.store.finish, job_id, owner=self.owner,
                                    error=f"timed out after {self.settings.job_timeout:.0f}s")
        except asyncio.CancelledError:  # gateway stopping: the job goes back to the queue
            process.kill()
            await process.wait()
            await asyncio.to_thread(self.store.release, job_id, self.owner)
            raise
        job = await asyncio.to_thread(self.store.job, job_id)
        if job is not None and job.status == "Running" and job.owner == self.owner:
            await asyncio.to_thread(self.store.finish, job_id, owner=self.owner,
                                    error="the job process ended without a result")
