"""``/forward_batch`` on a 100,000-row CSV of transactions, the ONNX ``fraud`` model, three
ways in one run (alternating rounds, median rows/s):

1. through the compose stack (docker-compose.yml + docker-compose.ci.yml: the gateway and
   MLServer containers, on Docker's bridge network);
2. through the process stack (``mlplatform up``: the same code as local processes);
3. the physical limit of the path: the same rows scored in this process by the same
   registered model (its ONNX session), no HTTP, no CSV.

Ratios are taken round by round (the three ways seconds apart) and their median told:
this machine's speed moves up to 2x within minutes.

Each gateway writes every batch to its prediction log off the request path (about a
second of a core per 100k rows); each round waits for that write to finish, so it is not
charged to the next path's round.

The CPU that each way uses is measured too (the process stack's gateway and MLServer, and
this process as the client): the path needs more CPU than the model alone, so on a
machine of N cores its wall time cannot go below (its CPU) / N -- the bench prints that
floor next to the ratios.

Goals: compose >= 0.9x the process stack; ``/forward_batch`` >= 0.5x the in-process
scoring.  Needs Docker (``make images IMAGES_FLAGS=--ci`` first or let this
build them).

    python bench/bench_compose_batch.py [--rows 100000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import mlflow
import psutil
import requests
from harness import throwaway_stack

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import FEATURES
from mlplatform.scripts import images, stack
from mlplatform.scripts.compose import ComposeProject


def upload(gateway: str, csv: bytes, rows: int, on_answer=lambda: None) -> float:
    """Rows per second for one upload, its answer received whole; ``on_answer`` is called
    then, before the answer is checked (the check is not part of the path)."""
    started = time.perf_counter()
    answer = requests.post(gateway + "/forward_batch?model=fraud",
                           files={"file": ("transactions.csv", csv)}, timeout=600)
    elapsed = time.perf_counter() - started
    on_answer()
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


class CpuMeter:
    """CPU seconds (user + system) that processes used, children included: the process
    stack's gateway and MLServer, and this process (the client; in-process scoring)."""

    def __init__(self, pids, children: bool = True):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.children = children

    def read(self) -> float:
        total = 0.0
        for process in self.processes:
            family = process.children(recursive=True) if self.children else []
            for one in [process, *family]:
                try:
                    total += sum(one.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    pass
        return total


def stack_pids(settings) -> list:
    components = stack.StackState(settings.state_path).components
    return [components[name].pid for name in ("gateway", "mlserver")]


def quiet(threshold: float = 20.0, at_most: float = 30.0) -> None:
    """Wait until the machine is idle (all cores under ``threshold`` % for half a second),
    at most ``at_most`` seconds.  Why: after the compose stack's round its PostgreSQL
    goes on working on the 100k rows just logged (WAL, autovacuum's analyze) for seconds
    after the insert returned, and that landed in the next round -- always the process
    stack's, which followed it."""
    deadline = time.monotonic() + at_most
    while psutil.cpu_percent(interval=0.5) >= threshold and time.monotonic() < deadline:
        pass


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
    compose = ComposeProject(public_predict=True)
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

            # this process's children are the process stack: the client is this process alone
            servers, client = CpuMeter(stack_pids(settings)), CpuMeter([os.getpid()], False)
            cpu = {"process stack": [], "client": [], "in-process": []}

            def through(gateway: str):
                def way() -> float:
                    quiet()
                    before = (servers.read(), client.read())

                    def metered() -> None:
                        if gateway == process_gateway:
                            cpu["process stack"].append(servers.read() - before[0])
                            cpu["client"].append(client.read() - before[1])

                    rate = upload(gateway, csv, args.rows, metered)
                    settle(gateway)
                    return rate
                return way

            def in_process_metered() -> float:
                quiet()
                before = client.read()
                rate = in_process()
                cpu["in-process"].append(client.read() - before)
                return rate

            ways = {"compose stack /forward_batch": through(compose.gateway_url),
                    "process stack /forward_batch": through(process_gateway),
                    "in-process, same ONNX model": in_process_metered}
            rates = {label: [] for label in ways}
            for _ in range(args.rounds):
                for label, way in ways.items():
                    rates[label].append(way())
    finally:
        compose.down()
    # This machine's speed moves up to 2x within minutes, so a ratio is taken within each
    # round (its three measurements are seconds apart) and the median of those is told.
    process, alone = rates["process stack /forward_batch"], rates["in-process, same ONNX model"]
    print(f"{args.rows:,}-row CSV ({len(csv) / 1e6:.1f} MB), {args.rounds} alternating rounds")
    print("| path | rows/s (median) | all rounds | x process stack | x in-process |")
    print("|---|---|---|---|---|")
    for label, values in rates.items():
        print(f"| {label} | {statistics.median(values):,.0f} | "
              f"{', '.join(f'{v / 1000:.0f}k' for v in values)} | "
              f"{round_ratio(values, process):.2f} | {round_ratio(values, alone):.2f} |")
    used = {name: 1000 * statistics.median(values) for name, values in cpu.items()}
    path = used["process stack"] + used["client"]
    print(f"CPU per {args.rows:,} rows (median ms, user + system): process stack's gateway + "
          f"MLServer {used['process stack']:.0f}, client (this process: upload, answer) "
          f"{used['client']:.0f}; in-process scoring {used['in-process']:.0f}.  On "
          f"{os.cpu_count()} cores the path's floor is {path / os.cpu_count():.0f} ms "
          f"wall: x in-process <= {used['in-process'] / path:.2f} at best")
    return 0


def round_ratio(values, reference) -> float:
    """The median over rounds of ``values / reference`` measured in the same round."""
    return statistics.median(v / r for v, r in zip(values, reference))


if __name__ == "__main__":
    sys.exit(main())
