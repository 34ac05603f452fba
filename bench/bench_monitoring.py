"""What monitoring costs: /forward with the metrics, the prediction log and the drift
window on, against the same gateway with ``MLPLATFORM_GATEWAY_MONITORING=false``.

A throw-away stack serves ``fraud``; two extra gateway processes, identical but for
that one setting, stand beside each other on its MLServer.  Closed-loop load on
``/forward?model=fraud``: at concurrency 16 (throughput) and at concurrency 1 (the
gateway process's CPU time per request), in alternating rounds (off, on, off, on, ...)
so drift on the machine hits both sides; the median of ``ROUNDS`` rounds each.  A
scraper reads each gateway's /metrics every 5 s meanwhile (as Prometheus would), and
the "on" gateway writes its prediction log to SQLite in the state folder.

Goals (observability issue): <= 5 % of the throughput at c=16, <= 0.05 ms CPU per request.

    python bench/bench_monitoring.py [--seconds 8] [--rounds 3]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading

import requests
from harness import asgi_server, cell, measure, throwaway_stack

from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.scripts import stack

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

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
        results = {(label, c): [] for label in gateways for c in (16, 1)}
        with scraping([url for url, _ in gateways.values()]):
            for _ in range(args.rounds):
                for concurrency in (16, 1):
                    for label, (url, pid) in gateways.items():
                        found = measure(url + "/forward?model=fraud", EXAMPLE_TRANSACTION,
                                        concurrency, args.seconds, pid=pid)
                        results[(label, concurrency)].append(found)
                        print(f"  c={concurrency} monitoring {label}: {cell(found)} "
                              f"cpu {found['cpu_ms']:.3f} ms", flush=True)
        on_url = gateways["on"][0]
        written = [line for line in requests.get(on_url + "/metrics", timeout=10).text.splitlines()
                   if line.startswith("mlplatform_gateway_prediction_log_")]

    def median(label, concurrency, key):
        return statistics.median(r[key] for r in results[(label, concurrency)])

    rps_off, rps_on = median("off", 16, "rps"), median("on", 16, "rps")
    cpu_off, cpu_on = median("off", 1, "cpu_ms"), median("on", 1, "cpu_ms")
    spread = [r["rps"] for r in results[("off", 16)]]
    print("\n| measure | monitoring off | monitoring on | cost | goal |")
    print("|---|---|---|---|---|")
    print(f"| /forward req/s at c=16 (median of {args.rounds}) | {rps_off:.0f} | {rps_on:.0f} | "
          f"{100 * (1 - rps_on / rps_off):+.1f} % | <= 5 % |")
    print(f"| gateway CPU ms per request at c=1 | {cpu_off:.3f} | {cpu_on:.3f} | "
          f"{cpu_on - cpu_off:+.3f} ms | <= 0.05 ms |")
    print(f"\nrounds without monitoring varied {min(spread):.0f}-{max(spread):.0f} req/s")
    print("\n".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
