"""Hostile uploads beside steady traffic: the gateway's peak memory and its /health latency.

Each case runs on a throw-away stack (fraud + digits served) while one client
sends /forward calls back to back and another polls /health every 20 ms:

* a zip whose headers lie (64 MB of zeros deflated to ~65 kB, declared 1,000 bytes);
* an honest zip bomb (ten 50 MB entries, declared as such);
* a 30 MB CSV of transactions to /forward_batch;
* a zip of 300,000 empty entries (26 MB: ZipFile() alone would build ~1 GB of entries).

Measured: the gateway's RSS before and its peak during the upload (sampled every
10 ms), the worst /health latency, and whether every /forward during it got a 200.
Goals (hardening issue): peak RSS <= base + 150 MB, /health <= 100 ms.

    python bench/bench_hostile_uploads.py
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import psutil
import requests
from harness import throwaway_stack

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES
from mlplatform.scripts import stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.zips import lying_zip, many_entries_zip, zip_of  # noqa: E402  (test inputs reused)

MB = 1024 * 1024


class Beside:
    """Steady /forward traffic and a /health poller on threads, for the length of a case."""

    def __init__(self, gateway: str):
        self.gateway = gateway
        self.stop = threading.Event()
        self.health_ms: List[float] = []
        self.forward_status: Dict[int, int] = {}
        self.threads = [threading.Thread(target=self._forward), threading.Thread(target=self._health)]

    def _forward(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                status = session.post(self.gateway + "/forward?model=fraud",
                                      json=EXAMPLE_TRANSACTION, timeout=60).status_code
                self.forward_status[status] = self.forward_status.get(status, 0) + 1

    def _health(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                started = time.perf_counter()
                session.get(self.gateway + "/health", timeout=60)
                self.health_ms.append(1000 * (time.perf_counter() - started))
                time.sleep(0.02)

    def __enter__(self) -> "Beside":
        for thread in self.threads:
            thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def run_case(label: str, gateway: str, pid: int, send: Callable[[], requests.Response]) -> None:
    process = psutil.Process(pid)
    base = process.memory_info().rss
    peak = base
    with Beside(gateway) as beside:
        answer: Dict[str, requests.Response] = {}
        sender = threading.Thread(target=lambda: answer.update(r=send()))
        sender.start()
        while sender.is_alive():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)
        sender.join()
        time.sleep(0.3)
    response = answer["r"]
    print(f"| {label} | {response.status_code} | {base / MB:.0f} | +{(peak - base) / MB:.0f} | "
          f"{max(beside.health_ms):.0f} | {sorted(beside.forward_status.items())} |", flush=True)


def main() -> int:
    rows = generate_transactions(800_000, seed=3)[list(FEATURES)].to_csv(index=False).encode()
    lying = lying_zip(64 * MB, 1000)
    honest = zip_of([(f"{i}.png", bytes(50 * MB)) for i in range(10)])
    crowded = many_entries_zip(300_000)
    with throwaway_stack(["fraud", "digits"]) as settings:
        gateway = settings.url(settings.gateway_port)
        pid = stack.StackState(settings.state_path).components["gateway"].pid
        requests.post(gateway + "/forward?model=fraud", json=EXAMPLE_TRANSACTION)  # warm up
        print("| upload | status | gateway RSS before MB | peak added MB | worst /health ms "
              "| /forward statuses during |")
        print("|---|---|---|---|---|---|")
        run_case(f"zip, headers lie ({len(lying) / 1e3:.0f} kB -> 64 MB, declared 1 kB)",
                 gateway, pid, lambda: requests.post(
                     gateway + "/forward_batch?model=digits", files={"file": ("b.zip", lying)}))
        run_case(f"zip bomb, honest headers ({len(honest) / 1e6:.1f} MB -> 500 MB)", gateway, pid,
                 lambda: requests.post(gateway + "/forward_batch?model=digits",
                                       files={"file": ("h.zip", honest)}))
        run_case(f"zip of 300,000 entries ({len(crowded) / 1e6:.0f} MB)", gateway, pid,
                 lambda: requests.post(gateway + "/forward_batch?model=digits",
                                       files={"file": ("many.zip", crowded)}))
        run_case(f"CSV {len(rows) / 1e6:.0f} MB (800,000 rows)", gateway, pid,
                 lambda: requests.post(gateway + "/forward_batch?model=fraud",
                                       files={"file": ("t.csv", rows)}, timeout=600))
    return 0


if __name__ == "__main__":
    sys.exit(main())
