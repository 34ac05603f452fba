"""The alternative a user would pick: the same registered model (the ONNX ``fraud``) served by
MLflow's own scoring server (``mlflow models serve``, one uvicorn worker, its default) vs
through the platform's gateway (and, for reference, MLServer's V2 endpoint directly), single
transactions, closed loop at concurrency 1 and 16, alternating rounds in one run.

Goal (its own issue, recorded here): the gateway >= 1.0x MLflow's server at concurrency 1,
>= 2x at 16.

    python bench/bench_mlflow_serve.py [--seconds 6] [--rounds 3] [--concurrency 1 16]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import requests
from harness import measure, throwaway_stack

from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.pyfunc_models.wire import json_request
from mlplatform.scripts import stack
from mlplatform.scripts.processes import free_port, spawn, wait_until


def mlflow_scoring_server(tracking: str, folder: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve",
               "-m", "models:/fraud@champion", "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port)]
    # it runs `bash -c "exec uvicorn ..."`: the venv's bin must be on PATH
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    process = spawn("mlflow-serve", command,
                    env={**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": path},
                    cwd=folder, url=url, log=folder / "mlflow-serve.log", ports={"http": port})
    wait_until(lambda: stack.http_ok(url + "/ping"), process, timeout=180, what="answering")
    return url, process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    with throwaway_stack(["fraud"]) as settings:
        scoring_url, scoring = mlflow_scoring_server(stack.tracking_uri(settings),
                                                     settings.state_path)
        try:
            paths = {
                "mlflow models serve": (scoring_url + "/invocations",
                                        {"dataframe_records": [EXAMPLE_TRANSACTION]}),
                "gateway /forward": (stack.gateway_url(settings) + "/forward?model=fraud",
                                     EXAMPLE_TRANSACTION),
                "MLServer V2 direct": (settings.url(settings.mlserver_http_port)
                                       + "/v2/models/fraud/infer",
                                       json_request(EXAMPLE_TRANSACTION, "fraud")),
            }
            for label, (url, body) in paths.items():  # the same answer, three ways
                answer = requests.post(url, json=body, timeout=30)
                answer.raise_for_status()
                print(f"{label}: {answer.text[:300]}")
            print("| concurrency | path | req/s (median of rounds) | p50 / p99 ms | "
                  "x mlflow models serve |")
            print("|---|---|---|---|---|")
            for concurrency in args.concurrency:
                results = {label: [] for label in paths}
                for _ in range(args.rounds):  # alternate: drift hits every path alike
                    for label, (url, body) in paths.items():
                        results[label].append(measure(url, body, concurrency, args.seconds))
                baseline = statistics.median(r["rps"] for r in results["mlflow models serve"])
                for label, rounds in results.items():
                    rps = statistics.median(r["rps"] for r in rounds)
                    p50 = statistics.median(r["p50_ms"] for r in rounds)
                    p99 = statistics.median(r["p99_ms"] for r in rounds)
                    errors = sum(r["errors"] for r in rounds)
                    print(f"| {concurrency} | {label} | {rps:.0f} | {p50:.2f} / {p99:.2f}"
                          f"{f' ({errors} errors)' if errors else ''} | {rps / baseline:.2f} |",
                          flush=True)
        finally:
            scoring.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
