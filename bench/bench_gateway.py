"""The gateway's cost, measured side by side in one run on the ONNX fraud model.

1. ``/forward`` vs direct V2 ``/v2/models/fraud/infer`` on the same MLServer,
   same concurrency (1 and 16): throughput ratio and added p50 latency.
   Targets: >= 0.8x the direct throughput, <= 2 ms added at p50.
2. ``/forward_batch`` with a 100,000-row CSV upload, end to end (upload, parse,
   MLServer, answers back).  Target: >= 200,000 rows/s.

    python bench/bench_gateway.py [--seconds 8] [--concurrency 1 16] [--rows 100000]
"""
from __future__ import annotations

import argparse
import sys
import time

import requests
from harness import cell, measure, throwaway_stack

from pyfunc_models.fraud.data import generate_transactions
from pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES
from pyfunc_models.wire import json_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with throwaway_stack(["fraud"]) as settings:
        direct = settings.url(settings.mlserver_http_port) + "/v2/models/fraud/infer"
        gateway = settings.url(settings.gateway_port)
        print("| concurrency | direct V2 req/s | p50 / p99 ms | gateway /forward req/s | p50 / p99 ms "
              "| throughput ratio | added p50 ms |")
        print("|---|---|---|---|---|---|---|")
        for concurrency in args.concurrency:
            v2 = measure(direct, json_request(EXAMPLE_TRANSACTION, "fraud"), concurrency,
                         args.seconds)
            forward = measure(gateway + "/forward?model=fraud", EXAMPLE_TRANSACTION, concurrency,
                              args.seconds)
            print(f"| {concurrency} | {cell(v2)} | {cell(forward)} | "
                  f"{forward['rps'] / v2['rps']:.2f} | {forward['p50_ms'] - v2['p50_ms']:+.2f} |",
                  flush=True)

        rows = generate_transactions(args.rows, seed=1)[list(FEATURES)].to_csv(index=False).encode()
        print(f"\n/forward_batch, {args.rows:,}-row CSV ({len(rows) / 1e6:.1f} MB), end to end:")
        for attempt in range(args.repeats):
            started = time.perf_counter()
            response = requests.post(gateway + "/forward_batch?model=fraud",
                                     files={"file": ("transactions.csv", rows)}, timeout=600)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text[:300]
            assert response.json()["rows"] == args.rows
            print(f"  run {attempt + 1}: {elapsed:.2f} s = {args.rows / elapsed:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
