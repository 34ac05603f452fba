"""What every benchmark here needs: a throw-away stack and a closed-loop load generator."""
from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import aiohttp
import psutil

from mlflow.tracking import MlflowClient

from mlplatform.mlserver_configs.serving import Serving
from mlplatform.pyfunc_models.registration import register
from mlplatform.scripts import stack
from mlplatform.scripts.processes import free_port, spawn, wait_until
from mlplatform.scripts.settings import PlatformSettings, load_settings


@contextlib.contextmanager
def throwaway_stack(models: Sequence[str], parallel_workers: int = 0) -> Iterator[PlatformSettings]:
    """MLflow (SQLite + local artifacts) and MLServer on free ports, ``models`` served."""
    with tempfile.TemporaryDirectory(prefix="mlplatform-bench-") as folder:
        settings = load_settings(
            state_dir=Path(folder), mlflow_port=free_port(), mlserver_http_port=free_port(),
            mlserver_grpc_port=free_port(), mlserver_metrics_port=free_port(),
            gateway_port=free_port(),
            parallel_workers=parallel_workers)
        settings.s3_endpoint_url = None  # benchmarks measure serving, not the artifact store
        stack.up(settings, report=lambda message: None)
        try:
            tracking = stack.tracking_uri(settings)
            for name in models:
                register(name, tracking)
            serving = Serving(MlflowClient(tracking_uri=tracking), stack.local_target(settings))
            failed = [o for o in serving.deploy_alias(settings.alias) if not o.ok]
            if failed:
                raise RuntimeError("; ".join(o.describe() for o in failed))
            yield settings
        finally:
            stack.down(settings, report=lambda message: None)


async def _load(url: str, body: dict, concurrency: int, seconds: float) -> Dict[str, float]:
    latencies: List[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with session.post(url, json=body) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm-up: connections, first-call caches
            async with session.post(url, json=body) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors,
    }


@contextlib.contextmanager
def asgi_server(app: str, env: Dict[str, str], cwd: Path,
                app_dir: Optional[Path] = None) -> Iterator[Tuple[str, int]]:
    """``uvicorn <app>`` on a free port (as ``mlplatform up`` runs the gateway), run in
    ``cwd`` (its log goes there too), importing from ``app_dir``; yields its URL and pid."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--no-access-log",
               "--log-level", "warning"]
    if app_dir is not None:
        command += ["--app-dir", str(app_dir)]
    url = f"http://127.0.0.1:{port}"
    process = spawn(app, command, env={**os.environ, **env}, cwd=cwd, url=url,
                    log=cwd / f"{app.replace(':', '_')}-{port}.log", ports={"http": port})
    try:
        wait_until(lambda: _answers(url), process, timeout=60, what="answering")
        yield url, process.pid
    finally:
        process.stop()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/health", timeout=1)
    except urllib.error.HTTPError:
        return True  # it answered (the relay has no /health)
    except OSError:
        return False
    return True


def measure(url: str, body: dict, concurrency: int, seconds: float,
            pid: Optional[int] = None) -> Dict[str, float]:
    """Closed loop: ``concurrency`` clients each send the next request when the last returns.

    With ``pid``: also ``cpu_ms``, that process's CPU time (user + system) per request --
    a steadier measure of a hop's own cost than throughput on a shared machine.
    """
    process = psutil.Process(pid) if pid else None
    before = sum(process.cpu_times()[:2]) if process else 0.0
    result = asyncio.run(_load(url, body, concurrency, seconds))
    if process:
        requests_done = result["rps"] * seconds
        result["cpu_ms"] = 1000 * (sum(process.cpu_times()[:2]) - before) / max(1, requests_done)
    return result


def measure_together(urls: Sequence[str], body: dict, concurrency: int, seconds: float,
                     pids: Sequence[int]) -> List[Dict[str, float]]:
    """``measure`` on several servers at the same time, ``concurrency`` clients each: they
    share the machine at the same moments, so drift on a shared machine hits them alike
    (rounds one after another varied +-20 % here).  Each result has ``cpu_ms``."""
    processes = [psutil.Process(pid) for pid in pids]
    before = [sum(p.cpu_times()[:2]) for p in processes]

    async def together():
        return await asyncio.gather(*(_load(url, body, concurrency, seconds) for url in urls))

    results = asyncio.run(together())
    for result, process, start in zip(results, processes, before):
        result["cpu_ms"] = (1000 * (sum(process.cpu_times()[:2]) - start)
                            / max(1, result["rps"] * seconds))
    return results


def cell(result: Dict[str, float]) -> str:
    """``req/s | p50 / p99 ms`` for a markdown table."""
    text = f"{result['rps']:.0f} | {result['p50_ms']:.2f} / {result['p99_ms']:.2f}"
    return text + (f" ({result['errors']:.0f} errors)" if result["errors"] else "")
