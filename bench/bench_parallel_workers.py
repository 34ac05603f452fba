"""MLServer ``parallel_workers`` 0 vs 1 for the echo and fraud models, side by side in one run.

Starts a throw-away MLflow (SQLite + local artifacts), registers both models,
then runs two MLServers on the same config except ``parallel_workers`` and
loads them in turn with the same asyncio client.  Prints req/s, p50 and p99 per
setting and the ratio workers=1 / workers=0.  Results go to docs/benchmarks.md.

    python bench/bench_parallel_workers.py [--seconds 8] [--concurrency 1 8]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import aiohttp
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlserver_configs.generator import ModelReference, ServerOptions, resolve, write_config  # noqa: E402
from pyfunc_models.fraud.features import EXAMPLE_TRANSACTION  # noqa: E402
from pyfunc_models.registration import register  # noqa: E402
from pyfunc_models.wire import json_request  # noqa: E402
from scripts import stack  # noqa: E402
from scripts.processes import free_port, spawn, wait_until  # noqa: E402
from scripts.settings import load_settings  # noqa: E402

MODELS = {"echo": {"a": 10}, "fraud": EXAMPLE_TRANSACTION}


async def load(url: str, body: dict, concurrency: int, seconds: float) -> Dict[str, float]:
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
        for _ in range(20):  # warm-up
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlplatform-bench-") as tmp:
        settings = load_settings(
            state_dir=Path(tmp), mlflow_port=free_port(), mlserver_http_port=free_port(),
            mlserver_grpc_port=free_port(), mlserver_metrics_port=free_port(),
            parallel_workers=0)
        settings.s3_endpoint_url = None  # always local artifacts here
        quiet = lambda message: None  # noqa: E731
        stack.up(settings, report=quiet)
        servers = {0: stack.StackState(settings.state_path).components["mlserver"]}
        extra = None
        try:
            tracking = stack.tracking_uri(settings)
            for name in MODELS:
                register(name, tracking)
            stack.deploy(settings, tracking)

            client = MlflowClient(tracking_uri=tracking)
            resolved = [resolve(client, ModelReference(name, "champion")) for name in MODELS]
            config = settings.state_path / "mlserver-workers-1"
            port = free_port()
            write_config(config, ServerOptions(http_port=port, grpc_port=free_port(),
                                               metrics_port=free_port(), parallel_workers=1),
                         resolved)
            extra = spawn("mlserver-w1", [stack.executable("mlserver"), "start", str(config)],
                          log=settings.state_path / "logs" / "mlserver-w1.log",
                          env=settings.child_environment(MLFLOW_TRACKING_URI=tracking),
                          cwd=settings.state_path, url=f"http://127.0.0.1:{port}", ports={})
            wait_until(lambda: stack.http_ok(extra.url + "/v2/health/ready"), extra,
                       timeout=180, what="ready")
            servers[1] = extra

            results = {}
            for model, data in MODELS.items():
                body = json_request(data, model)
                for concurrency in args.concurrency:
                    for workers, server in servers.items():
                        url = f"{server.url}/v2/models/{model}/infer"
                        results[(model, concurrency, workers)] = asyncio.run(
                            load(url, body, concurrency, args.seconds))
            report(results, args.concurrency)
        finally:
            if extra is not None:
                extra.stop()
            stack.down(settings, report=quiet)
    return 0


def report(results, concurrencies) -> None:
    print("| model | concurrency | workers=0 req/s | p50 / p99 ms | workers=1 req/s | p50 / p99 ms "
          "| ratio w1/w0 |")
    print("|---|---|---|---|---|---|---|")
    for model in MODELS:
        for concurrency in concurrencies:
            zero, one = results[(model, concurrency, 0)], results[(model, concurrency, 1)]
            print(f"| {model} | {concurrency} | {zero['rps']:.0f} | "
                  f"{zero['p50_ms']:.2f} / {zero['p99_ms']:.2f} | {one['rps']:.0f} | "
                  f"{one['p50_ms']:.2f} / {one['p99_ms']:.2f} | {one['rps'] / zero['rps']:.2f} |")
            if zero["errors"] or one["errors"]:
                print(f"  errors: workers=0 {zero['errors']}, workers=1 {one['errors']}")


if __name__ == "__main__":
    sys.exit(main())
