"""What every benchmark here needs: a throw-away stack and a closed-loop load generator."""
from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyfunc_models.registration import register  # noqa: E402
from scripts import stack  # noqa: E402
from scripts.processes import free_port  # noqa: E402
from scripts.settings import PlatformSettings, load_settings  # noqa: E402


@contextlib.contextmanager
def throwaway_stack(models: Sequence[str], parallel_workers: int = 0) -> Iterator[PlatformSettings]:
    """MLflow (SQLite + local artifacts) and MLServer on free ports, ``models`` served."""
    with tempfile.TemporaryDirectory(prefix="mlplatform-bench-") as folder:
        settings = load_settings(
            state_dir=Path(folder), mlflow_port=free_port(), mlserver_http_port=free_port(),
            mlserver_grpc_port=free_port(), mlserver_metrics_port=free_port(),
            parallel_workers=parallel_workers)
        settings.s3_endpoint_url = None  # benchmarks measure serving, not the artifact store
        stack.up(settings, report=lambda message: None)
        try:
            tracking = stack.tracking_uri(settings)
            for name in models:
                register(name, tracking)
            failed = [o for o in stack.deploy(settings, tracking) if not o.ok]
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


def measure(url: str, body: dict, concurrency: int, seconds: float) -> Dict[str, float]:
    """Closed loop: ``concurrency`` clients each send the next request when the last returns."""
    return asyncio.run(_load(url, body, concurrency, seconds))


def cell(result: Dict[str, float]) -> str:
    """``req/s | p50 / p99 ms`` for a markdown table."""
    text = f"{result['rps']:.0f} | {result['p50_ms']:.2f} / {result['p99_ms']:.2f}"
    return text + (f" ({result['errors']:.0f} errors)" if result["errors"] else "")
