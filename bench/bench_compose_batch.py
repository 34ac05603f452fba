"""``/forward_batch`` on a 100,000-row CSV of transactions, the ONNX ``fraud`` model, three
ways in one run (alternating rounds, median rows/s):

1. through the compose stack (docker-compose.yml + docker-compose.ci.yml: the gateway and
   MLServer containers, on Docker's bridge network);
2. through the process stack (``mlplatform up``: the same code as local processes);
3. the physical limit of the path: the same rows scored in this process by the same
   registered model (its ONNX session), no HTTP, no CSV.

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
            model.predict(frame)

            def in_process() -> float:
                started = time.perf_counter()
                answer = model.predict(frame)
                elapsed = time.perf_counter() - started
                if len(answer) != args.rows:
                    raise RuntimeError(f"in-process: {len(answer)} answers for {args.rows} rows")
                return args.rows / elapsed

            ways = {"compose stack /forward_batch": lambda: upload(compose.gateway_url, csv,
                                                                   args.rows),
                    "process stack /forward_batch": lambda: upload(process_gateway, csv,
                                                                   args.rows),
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
