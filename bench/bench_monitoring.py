"""What monitoring costs: /forward with the metrics, the prediction log and the drift
window on, against the same gateway with ``MLPLATFORM_GATEWAY_MONITORING=false``.

1. In one process, without network or MLServer: the gateway app called straight through
   ASGI (no HTTP client in the measure) against the tests' V2 and registry stand-ins,
   ``--calls`` /forward calls of fraud-like documents per round, CPU time of the whole
   process (the log's writer thread and its last flush included).
2. A throw-away stack serves ``fraud``; two extra gateway processes, identical but for
   that one setting, stand beside each other on its MLServer.  Closed-loop load at
   concurrency 16 on ``/forward?model=fraud``: throughput and the gateway process's CPU
   time per request.  A scraper reads each gateway's /metrics every 5 s (as Prometheus
   would); the "on" gateway writes its prediction log to SQLite in the state folder.

3. The same two gateways loaded at the same time, 16 clients each: both see the machine
   in the same state at the same moments; the on/off throughput ratio and each process's
   CPU per request.

1 and 2 alternate the sides round by round (and which goes first); the throughput cost
is the median of each round's on/off ratio.  On 2 shared cores one configuration's
numbers still vary +-20 % between rounds one after another, which 3 avoids.

Goals (observability issue): <= 5 % of the throughput at c=16, <= 0.05 ms CPU per request.

    python bench/bench_monitoring.py [--seconds 6] [--rounds 7] [--calls 4000]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import requests
from harness import asgi_server, cell, measure, measure_together, throwaway_stack

from mlplatform.gateway.app import build, create_app
from mlplatform.gateway.settings import GatewaySettings
from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION, FEATURES, feature_frame
from mlplatform.pyfunc_models.profile import reference_profile
from mlplatform.scripts import stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_gateway_routes import FakeRegistry, FakeV2  # noqa: E402

SCRAPE_SECONDS = 5.0


@contextlib.contextmanager
def scraping(urls):
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(SCRAPE_SECONDS):
            for url in urls:
                requests.get(url + "/metrics", timeout=10)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def in_process(monitoring: bool, calls: int, folder: Path, documents) -> float:
    """CPU ms per /forward call of the gateway app in this process, stand-ins behind it."""
    settings = GatewaySettings(
        database_url=f"sqlite:///{folder / 'gateway.db'}", jobs_storage=str(folder / "jobs"),
        feature_store_url=f"sqlite:///{folder / 'log.db'}", mlserver_grpc="",
        forward_model="echo", monitoring=monitoring, alias_poll=0)
    registry = FakeRegistry(served="1", aliases={"champion": "1"})
    registry.profile = PROFILE
    gateway = build(settings, upstream=FakeV2({"echo": ["1"]}), registry=registry)
    app = create_app(settings, gateway)

    bodies = [orjson.dumps(document) for document in documents]

    async def run() -> float:
        async with app.router.lifespan_context(app):
            for body in bodies[:200]:  # warm-up
                await call(app, body)
            started = time.process_time()
            for n in range(calls):
                await call(app, bodies[n % len(bodies)])
            if gateway.monitoring.log is not None:
                await gateway.monitoring.log.flush()
            return time.process_time() - started

    return 1000 * asyncio.run(run()) / calls


async def call(app, body: bytes) -> None:
    """One POST /forward straight into the ASGI app: no HTTP client in the measure (httpx's
    ASGI transport alone costs ~0.3 ms a call, and varies)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/forward", "raw_path": b"/forward",
             "query_string": b"", "root_path": "", "server": ("gw", 80), "client": ("c", 1),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent


PROFILE = reference_profile(feature_frame(generate_transactions(20_000, 42)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()

    documents = [{**row, "a": 1} for row in
                 generate_transactions(1000, 3)[list(FEATURES)].to_dict("records")]
    cpu = {True: [], False: []}
    for round_number in range(args.rounds):
        order = (False, True) if round_number % 2 == 0 else (True, False)
        for monitoring in order:
            with tempfile.TemporaryDirectory() as folder:
                cpu[monitoring].append(in_process(monitoring, args.calls, Path(folder),
                                                  documents))
        print(f"  in process: off {cpu[False][-1]:.4f}, on {cpu[True][-1]:.4f} ms CPU per "
              "call", flush=True)

    with throwaway_stack(["fraud"]) as settings, contextlib.ExitStack() as servers:
        state = settings.state_path
        common = {"MLPLATFORM_GATEWAY_MLSERVER_URL": settings.url(settings.mlserver_http_port),
                  "MLPLATFORM_GATEWAY_TRACKING_URI": stack.tracking_uri(settings)}
        gateways = {}
        for label, on in (("off", "false"), ("on", "true")):
            gateways[label] = servers.enter_context(asgi_server("mlplatform.gateway.app:app", {
                **common, "MLPLATFORM_GATEWAY_MONITORING": on,
                "MLPLATFORM_GATEWAY_DATABASE_URL": f"sqlite:///{state / f'gateway-{label}.db'}",
                "MLPLATFORM_GATEWAY_FEATURE_STORE_URL": f"sqlite:///{state / f'log-{label}.db'}",
                "MLPLATFORM_GATEWAY_JOBS_STORAGE": str(state / f"jobs-{label}")}, cwd=state))
        together = []
        with scraping([url for url, _ in gateways.values()]):
            for _ in range(args.rounds):
                found = dict(zip(("off", "on"), measure_together(
                    [url + "/forward?model=fraud" for url, _ in gateways.values()],
                    EXAMPLE_TRANSACTION, 16, args.seconds, [pid for _, pid in gateways.values()])))
                together.append(found)
                print(f"  together, c=16 each: off {cell(found['off'])} cpu "
                      f"{found['off']['cpu_ms']:.3f} | on {cell(found['on'])} cpu "
                      f"{found['on']['cpu_ms']:.3f}", flush=True)
        rounds = []
        with scraping([url for url, _ in gateways.values()]):
            for round_number in range(args.rounds):
                order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
                found = {}
                for label in order:
                    url, pid = gateways[label]
                    found[label] = measure(url + "/forward?model=fraud", EXAMPLE_TRANSACTION,
                                           16, args.seconds, pid=pid)
                rounds.append(found)
                print(f"  c=16 off {cell(found['off'])} cpu {found['off']['cpu_ms']:.3f} | "
                      f"on {cell(found['on'])} cpu {found['on']['cpu_ms']:.3f} | "
                      f"on/off {found['on']['rps'] / found['off']['rps']:.3f}", flush=True)
        written = [line for line in requests.get(gateways["on"][0] + "/metrics",
                                                 timeout=10).text.splitlines()
                   if line.startswith("mlplatform_gateway_prediction_log_") and "_created" not in line]

    ratio = statistics.median(r["on"]["rps"] / r["off"]["rps"] for r in rounds)
    rps = {label: statistics.median(r[label]["rps"] for r in rounds) for label in ("off", "on")}
    busy = {label: statistics.median(r[label]["cpu_ms"] for r in rounds) for label in ("off", "on")}
    added = statistics.median(r["on"]["cpu_ms"] - r["off"]["cpu_ms"] for r in rounds)
    alone = {label: statistics.median(cpu[label]) for label in (False, True)}
    share = statistics.median(r["on"]["rps"] / r["off"]["rps"] for r in together)
    shared_cpu = {label: statistics.median(r[label]["cpu_ms"] for r in together)
                  for label in ("off", "on")}
    shared_added = statistics.median(r["on"]["cpu_ms"] - r["off"]["cpu_ms"] for r in together)
    least = {label: min(cpu[label]) for label in (False, True)}
    spread = [r["off"]["rps"] for r in rounds]
    print(f"\n| measure ({args.rounds} alternating rounds) | monitoring off | monitoring on | "
          "cost | goal |")
    print("|---|---|---|---|---|")
    print(f"| /forward req/s at c=16, median (cost: median of the rounds' on/off ratios) | "
          f"{rps['off']:.0f} | {rps['on']:.0f} | {100 * (1 - ratio):.1f} % | <= 5 % |")
    print(f"| gateway process CPU ms per request at c=16, median | {busy['off']:.3f} | "
          f"{busy['on']:.3f} | {added:+.3f} ms | <= 0.05 ms |")
    print(f"| both loaded at once (16 clients each): on/off req/s, median | | | "
          f"{100 * (1 - share):.1f} % | <= 5 % |")
    print(f"| both loaded at once: gateway CPU ms per request, median | {shared_cpu['off']:.3f} "
          f"| {shared_cpu['on']:.3f} | {shared_added:+.3f} ms | <= 0.05 ms |")
    print(f"| in process, CPU ms per /forward, median | {alone[False]:.4f} | {alone[True]:.4f} | "
          f"{alone[True] - alone[False]:+.4f} ms | <= 0.05 ms |")
    print(f"| in process, CPU ms per /forward, least | {least[False]:.4f} | {least[True]:.4f} | "
          f"{least[True] - least[False]:+.4f} ms | <= 0.05 ms |")
    print(f"\nrounds without monitoring varied {min(spread):.0f}-{max(spread):.0f} req/s")
    print("\n".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
