"""MLServer ``parallel_workers`` 0 vs 1 for the echo and fraud models, side by side in one run.

Runs a throw-away stack (MLServer with 0 workers), plus a second MLServer on the
same registry versions with 1 worker, and loads them in turn with the same
client.  Prints req/s, p50 and p99 per setting and the ratio workers=1 / workers=0.

    python bench/bench_parallel_workers.py [--seconds 8] [--concurrency 1 8]
"""
from __future__ import annotations

import argparse
import sys

from harness import cell, measure, throwaway_stack
from mlflow.tracking import MlflowClient

from mlplatform.mlserver_configs.generator import ModelReference, ServerOptions, resolve, write_config
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.pyfunc_models.wire import json_request
from mlplatform.scripts import stack
from mlplatform.scripts.processes import free_port, spawn, wait_until

MODELS = {"echo": {"a": 10}, "fraud": EXAMPLE_TRANSACTION}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    print("| model | concurrency | workers=0 req/s | p50 / p99 ms | workers=1 req/s | p50 / p99 ms "
          "| ratio w1/w0 |")
    print("|---|---|---|---|---|---|---|")
    with throwaway_stack(list(MODELS), parallel_workers=0) as settings:
        tracking = stack.tracking_uri(settings)
        client = MlflowClient(tracking_uri=tracking)
        resolved = [resolve(client, ModelReference(name, "champion")) for name in MODELS]
        config, port = settings.state_path / "mlserver-workers-1", free_port()
        write_config(config, ServerOptions(http_port=port, grpc_port=free_port(),
                                           metrics_port=free_port(), parallel_workers=1), resolved)
        one = spawn("mlserver-w1", [stack.executable("mlserver"), "start", str(config)],
                    log=settings.state_path / "logs" / "mlserver-w1.log",
                    env=settings.child_environment(MLFLOW_TRACKING_URI=tracking),
                    cwd=settings.state_path, url=f"http://127.0.0.1:{port}", ports={})
        try:
            wait_until(lambda: stack.http_ok(one.url + "/v2/health/ready"), one, timeout=180,
                       what="ready")
            urls = {0: settings.url(settings.mlserver_http_port), 1: one.url}
            for model, data in MODELS.items():
                body = json_request(data, model)
                for concurrency in args.concurrency:
                    zero, single = (measure(f"{urls[w]}/v2/models/{model}/infer", body,
                                            concurrency, args.seconds) for w in (0, 1))
                    print(f"| {model} | {concurrency} | {cell(zero)} | {cell(single)} | "
                          f"{single['rps'] / zero['rps']:.2f} |", flush=True)
        finally:
            one.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
