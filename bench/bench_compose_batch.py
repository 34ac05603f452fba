"""``/forward_batch`` on a 100,000-row CSV of transactions, the ONNX ``fraud`` model, three
ways in one run (alternating rounds, median rows/s):

1. through the compose stack (docker-compose.yml + docker-compose.ci.yml: the gateway and
   MLServer containers, on Docker's bridge network);
2. through the process stack (``mlplatform up``: the same code as local processes);
3. the physical limit of the path: the same rows scored in this process by the same
   registered model (its ONNX session), no HTTP, no CSV.

Each gateway writes every batch to its prediction log off the request path (about a
second of a core per 100k rows); each round waits for that write to finish, so it is not
charged to the next path's round.

Goals: compose >= 0.9x the process stack; the process stack's ``/forward_batch`` >= 0.5x
the in-process scoring.  Needs Docker (``make images IMAGES_FLAGS=--ci`` first or let this
build them).

    python bench/bench_compose_batch.py [--rows 100000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import mlflow
import requests
from harness import throwaway_stack

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import FEATURES
from mlplatform.scripts import images, stack
from mlplatform.scripts.compose import ComposeProject


def upload(gateway: str, csv: bytes, rows: int) -> float:
    started = time.perf_counter()
    answer = requests.post(gateway + "/forward_batch?model=fraud",
                           files={"file": ("transactions.csv", csv)}, timeout=600)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    if answer.json()["rows"] != rows:
        raise RuntimeError(f"{gateway}: {answer.json()['rows']} rows answered, {rows} sent")
    return rows / elapsed


def log_counts(gateway: str) -> tuple:
    text = requests.get(gateway + "/metrics", timeout=30).text
    values = {}
    for line in text.splitlines():
        for name in ("prediction_log_pending", "prediction_log_written"):
            if line.startswith(f"mlplatform_gateway_{name} "):
                values[name] = float(line.split()[-1])
    return values.get("prediction_log_pending", 0.0), values.get("prediction_log_written", 0.0)


def settle(gateway: str) -> None:
    """Wait until the gateway's prediction log has written the last batch (off the request
    path, ~1 s of a core for 100k rows): otherwise that work lands in the next path's round."""
    previous = None
    while True:
        counts = log_counts(gateway)
        if counts[0] == 0 and counts == previous:
            return
        previous = counts
        time.sleep(0.5)


def wait_until_served(gateway: str, csv: bytes, rows: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            upload(gateway, csv, rows)
            return
        except (requests.RequestException, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    frame = generate_transactions(args.rows, seed=1)[list(FEATURES)]
    csv = frame.to_csv(index=False).encode()
    images.build_all(ci=True)
    compose = ComposeProject()
    try:
        compose.up()
        compose.register("fraud")
        compose.deploy(["fraud@champion"])
        with throwaway_stack(["fraud"]) as settings:
            process_gateway = stack.gateway_url(settings)
            mlflow.set_tracking_uri(stack.tracking_uri(settings))
            model = mlflow.pyfunc.load_model("models:/fraud@champion")
            for gateway in (compose.gateway_url, process_gateway):
                wait_until_served(gateway, csv, args.rows)  # and a warm-up run each
                settle(gateway)
            model.predict(frame)

            def in_process() -> float:
                started = time.perf_counter()
                answer = model.predict(frame)  # a table model answers columns
                elapsed = time.perf_counter() - started
                answered = {len(column) for column in answer.values()}
                if answered != {args.rows}:
                    raise RuntimeError(f"in-process: {answered} answers for {args.rows} rows")
                return args.rows / elapsed

            def through(gateway: str):
                def way() -> float:
                    rate = upload(gateway, csv, args.rows)
                    settle(gateway)
                    return rate
                return way

            ways = {"compose stack /forward_batch": through(compose.gateway_url),
                    "process stack /forward_batch": through(process_gateway),
                    "in-process, same ONNX model": in_process}
            rates = {label: [] for label in ways}
            for _ in range(args.rounds):
                for label, way in ways.items():
                    rates[label].append(way())
    finally:
        compose.down()
    medians = {label: statistics.median(values) for label, values in rates.items()}
    process = medians["process stack /forward_batch"]
    print(f"{args.rows:,}-row CSV ({len(csv) / 1e6:.1f} MB), median of {args.rounds} "
          "alternating rounds")
    print("| path | rows/s (median) | all rounds | x process stack | x in-process |")
    print("|---|---|---|---|---|")
    for label, values in rates.items():
        print(f"| {label} | {medians[label]:,.0f} | "
              f"{', '.join(f'{v / 1000:.0f}k' for v in values)} | {medians[label] / process:.2f} | "
              f"{medians[label] / medians['in-process, same ONNX model']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
