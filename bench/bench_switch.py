"""Switching versions under load: 5 promotions and 1 rollback while /forward runs at a
constant rate through the gateway.

A throw-away stack serves ``fraud`` version 1; version 2 is registered beside it.
A client sends ``RATE`` requests per second (open loop: each on schedule, whatever
the earlier ones are doing) to ``/forward?model=fraud`` for the whole run.  After
``STEADY`` seconds of steady state, the versions are switched with
``Serving.promote`` (what ``POST /deploy/<id>`` and ``mlplatform deploy --promote``
run) five times, alternating, then once with ``Serving.rollback``, ``GAP`` seconds
apart.

Measured, side by side in one run: failed requests; per switch, the switch time
(call -> first answer from the new version) and whether every request sent after
the call returned was answered by the new version; p99 latency in the steady
phase and in the switch windows (from each call until 1 s after it returned).
Goals (lifecycle issue): 0 failed, switch <= 2 s, p99 during switches <= 2x steady.

    python bench/bench_switch.py
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import aiohttp
from harness import throwaway_stack
from mlflow.tracking import MlflowClient

from mlplatform.mlserver_configs.serving import Serving
from mlplatform.pyfunc_models.conventions import CANARY
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.pyfunc_models.registration import register
from mlplatform.scripts import stack

RATE = 150          # requests per second, open loop
STEADY = 10.0       # seconds before the first switch
GAP = 4.0           # seconds between switches
TAIL = 3.0          # seconds after the last one
WARM_UP = 2.0       # seconds of connections opening, not counted as steady state
WORKERS = int(os.environ.get("BENCH_PARALLEL_WORKERS", "0"))  # MLServer parallel workers


@dataclass
class Answer:
    sent: float
    latency: float
    status: int
    version: Optional[str]
    error: str = ""


async def _drive(url: str, stop: threading.Event, answers: List[Answer]) -> None:
    async def one(session: aiohttp.ClientSession) -> None:
        sent = time.perf_counter()
        try:
            async with session.post(url, json=EXAMPLE_TRANSACTION) as response:
                body = await response.read()
                answers.append(Answer(sent, time.perf_counter() - sent, response.status,
                                      response.headers.get("x-model-version"),
                                      "" if response.status == 200 else body[:300].decode()))
        except aiohttp.ClientError as exc:
            answers.append(Answer(sent, time.perf_counter() - sent, 0, None, repr(exc)))

    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        pending = set()
        start = time.perf_counter()
        n = 0
        while not stop.is_set():
            n += 1
            await asyncio.sleep(max(0.0, start + n / RATE - time.perf_counter()))
            task = asyncio.create_task(one(session))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


def percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[int(share * (len(ordered) - 1))] if ordered else float("nan")


def p99(values: List[float]) -> float:
    return percentile(values, 0.99)


def main() -> int:
    with throwaway_stack(["fraud"], parallel_workers=WORKERS) as settings:
        tracking = stack.tracking_uri(settings)
        register("fraud", tracking, alias="challenger", force=True)  # version 2
        serving = Serving(MlflowClient(tracking_uri=tracking), stack.local_target(settings))
        url = settings.url(settings.gateway_port) + "/forward?model=fraud"
        answers: List[Answer] = []
        stop = threading.Event()
        driver = threading.Thread(target=lambda: asyncio.run(_drive(url, stop, answers)))
        driver.start()
        switches: List[Tuple[str, str, float, float]] = []  # (kind, version, called, returned)
        loads: List[Tuple[float, float]] = []
        try:
            time.sleep(STEADY)
            plan = [("promote", "2"), ("promote", "1"), ("promote", "2"), ("promote", "1"),
                    ("promote", "2"), ("rollback", "1")]
            for kind, version in plan:
                called = time.perf_counter()
                outcome = (serving.promote("fraud", version) if kind == "promote"
                           else serving.rollback("fraud"))
                returned = time.perf_counter()
                if not outcome.ok or outcome.version != version:
                    raise RuntimeError(f"{kind} {version}: {outcome.describe()}")
                switches.append((kind, version, called, returned))
                time.sleep(GAP)
            # The floor: the same loads with no switch at all -- the other version loaded
            # beside the served one (a 0 % canary) and unloaded again.
            for _ in range(3):
                called = time.perf_counter()
                serving.route("fraud", CANARY, "challenger", 0.0)
                loads.append((called, time.perf_counter()))
                time.sleep(GAP / 2)
                serving.clear_route("fraud")
                time.sleep(GAP / 2)
            time.sleep(TAIL)
        finally:
            stop.set()
            driver.join()
    report(answers, switches, loads)
    return 0


def report(answers: List[Answer], switches, loads) -> None:
    if os.environ.get("BENCH_DUMP"):  # every request, for a closer look
        import json

        with open(os.environ["BENCH_DUMP"], "w") as out:
            json.dump({"answers": [a.__dict__ for a in answers], "switches": switches}, out)
    first = switches[0][2]
    warm = answers[0].sent + WARM_UP
    steady = [a.latency for a in answers if warm <= a.sent < first]
    windows = [(called, returned + 1.0) for _, _, called, returned in switches]
    during = [a.latency for a in answers if any(s <= a.sent <= e for s, e in windows)]
    failed = [a for a in answers if a.status != 200]
    seconds = answers[-1].sent - answers[0].sent
    print(f"{len(answers)} requests in {seconds:.1f} s ({len(answers) / seconds:.0f} req/s), "
          f"{len(failed)} failed")
    for answer in failed:
        print(f"  failed at {answer.sent - answers[0].sent:.2f} s: {answer.status} {answer.error}")
    print("| switch | to version | call took s | switch time s | answers after the call "
          "returned from the old version |")
    print("|---|---|---|---|---|")
    loading = [a.latency for a in answers if any(c <= a.sent <= r for _, _, c, r in switches)]
    print(f"while the new version loads: p50 {percentile(loading, 0.5):.1f} ms, p99 "
          f"{p99(loading):.1f} ms ({len(loading)} requests)")
    for kind, version, called, returned in switches:
        new = [a for a in answers if a.sent >= called and a.version == version]
        switch_time = (min(a.sent + a.latency for a in new) - called) if new else float("nan")
        stale = [a for a in answers if a.sent >= returned and a.status == 200
                 and a.version != version and a.sent < returned + GAP]
        print(f"| {kind} | {version} | {returned - called:.2f} | {switch_time:.2f} | "
              f"{len(stale)} |")
    floor = [a.latency for a in answers if any(s <= a.sent <= e + 1.0 for s, e in loads)]
    print(f"floor -- a version loaded beside, no switch: p50 {percentile(floor, 0.5):.1f} ms, "
          f"p99 {p99(floor):.1f} ms ({len(floor)} requests)")
    print(f"steady: p50 {percentile(steady, 0.5):.1f} ms, p99 {p99(steady):.1f} ms "
          f"({len(steady)} requests); during switches: p50 {percentile(during, 0.5):.1f} ms, "
          f"p99 {p99(during):.1f} ms ({len(during)} requests); p99 ratio "
          f"{p99(during) / p99(steady):.2f}")


if __name__ == "__main__":
    sys.exit(main())
