"""The gateway's cost, measured side by side in one run on the ONNX fraud model.

1. ``/forward`` vs direct V2 ``/v2/models/fraud/infer`` on the same MLServer, same
   concurrency (1 and 16): throughput ratio and added p50 latency.
   Targets: >= 0.8x the direct throughput, <= 2 ms added at p50.
   Beside them, on the same MLServer: the gateway with request sharing turned off
   (``MLPLATFORM_GATEWAY_COALESCE_MAX_BATCH=1``) and ``relay.py``, a bare ASGI relay
   with no framework and no checks -- the floor of any Python HTTP hop.
2. ``/forward_batch`` with a 100,000-row CSV upload, end to end (upload, parse,
   MLServer over gRPC, answers back), one warm-up run then the median of the runs.
   Target: >= 200,000 rows/s.

    python bench/bench_gateway.py [--seconds 8] [--concurrency 1 16] [--rows 100000]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import requests
from harness import asgi_server, cell, measure, throwaway_stack

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES
from mlplatform.pyfunc_models.wire import json_request
from mlplatform.scripts import stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with throwaway_stack(["fraud"]) as settings, contextlib.ExitStack() as servers:
        direct = settings.url(settings.mlserver_http_port) + "/v2/models/fraud/infer"
        gateway = settings.url(settings.gateway_port)
        state = settings.state_path
        gateway_pid = stack.StackState(state).components["gateway"].pid
        unshared, unshared_pid = servers.enter_context(asgi_server("mlplatform.gateway.app:app", {
            "MLPLATFORM_GATEWAY_MLSERVER_URL": settings.url(settings.mlserver_http_port),
            "MLPLATFORM_GATEWAY_TRACKING_URI": stack.tracking_uri(settings),
            "MLPLATFORM_GATEWAY_DATABASE_URL": f"sqlite:///{state / 'unshared.db'}",
            "MLPLATFORM_GATEWAY_JOBS_STORAGE": str(state / "unshared-jobs"),
            "MLPLATFORM_GATEWAY_COALESCE_MAX_BATCH": "1"}, cwd=state))
        relay, relay_pid = servers.enter_context(asgi_server(
            "relay:app", {"RELAY_TARGET": direct}, cwd=state, app_dir=Path(__file__).parent))
        paths = [("gateway /forward", gateway + "/forward?model=fraud", gateway_pid),
                 ("gateway, sharing off", unshared + "/forward?model=fraud", unshared_pid),
                 ("bare ASGI relay", relay, relay_pid)]
        print("| concurrency | path | req/s | p50 / p99 ms | x direct | added p50 ms "
              "| hop CPU ms / request |")
        print("|---|---|---|---|---|---|---|")
        for concurrency in args.concurrency:
            v2 = measure(direct, json_request(EXAMPLE_TRANSACTION, "fraud"), concurrency,
                         args.seconds)
            print(f"| {concurrency} | direct V2 | {cell(v2)} | 1.00 | | |", flush=True)
            for label, url, pid in paths:
                hop = measure(url, EXAMPLE_TRANSACTION, concurrency, args.seconds, pid=pid)
                print(f"| {concurrency} | {label} | {cell(hop)} | {hop['rps'] / v2['rps']:.2f} | "
                      f"{hop['p50_ms'] - v2['p50_ms']:+.2f} | {hop['cpu_ms']:.3f} |", flush=True)

        rows = generate_transactions(args.rows, seed=1)[list(FEATURES)].to_csv(index=False).encode()
        print(f"\n/forward_batch, {args.rows:,}-row CSV ({len(rows) / 1e6:.1f} MB), end to end "
              f"(1 warm-up, then {args.repeats} runs):")
        rates = []
        for attempt in range(args.repeats + 1):
            started = time.perf_counter()
            response = requests.post(gateway + "/forward_batch?model=fraud",
                                     files={"file": ("transactions.csv", rows)}, timeout=600)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text[:300]
            assert response.json()["rows"] == args.rows
            if attempt:
                rates.append(args.rows / elapsed)
            print(f"  {'run ' + str(attempt) if attempt else 'warm-up'}: {elapsed:.2f} s = "
                  f"{args.rows / elapsed:,.0f} rows/s")
        print(f"  median: {statistics.median(rates):,.0f} rows/s "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
