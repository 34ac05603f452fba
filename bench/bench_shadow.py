"""What a shadow costs: /forward throughput at concurrency 16 with and without one.

A throw-away stack serves ``fraud``; a second version is registered as challenger.
Closed-loop load (16 clients, ``SECONDS`` each round) on ``/forward?model=fraud``,
each shadow round right after a round without a rule: ``--shadow challenger``
(every call copied in the background) and ``--shadow challenger=20``, ROUNDS times over,
so drift on the machine hits both sides.  Goal (lifecycle issue): the shadow costs <= 10 %
of the throughput.  The shadow's own report (copies answered, dropped) is printed.

    python bench/bench_shadow.py
"""
from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.request

from harness import cell, measure, throwaway_stack
from mlflow.tracking import MlflowClient

from mlplatform.mlserver_configs.serving import Serving
from mlplatform.pyfunc_models.conventions import SHADOW
from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.pyfunc_models.registration import register
from mlplatform.scripts import stack

SECONDS = 10.0
ROUNDS = 3  # pairs per share: round-to-round drift on 2 cores is up to +-20 %
CONCURRENCY = 16
SHARES = (100.0, 20.0)  # a copy of every call; of one call in five
SETTLE = 12.0  # the gateway reads the rule within REGISTRY_TTL (10 s)


def main() -> int:
    with throwaway_stack(["fraud"]) as settings:
        tracking = stack.tracking_uri(settings)
        register("fraud", tracking, alias="challenger", force=True)
        serving = Serving(MlflowClient(tracking_uri=tracking), stack.local_target(settings))
        gateway = settings.url(settings.gateway_port)
        url = gateway + "/forward?model=fraud"
        rows, reports = [], {}
        for _ in range(ROUNDS):
            for share in SHARES:
                serving.clear_route("fraud")
                time.sleep(SETTLE)
                rows.append(("none", measure(url, EXAMPLE_TRANSACTION, CONCURRENCY, SECONDS)))
                outcome = serving.route("fraud", SHADOW, "challenger", share)
                if not outcome.ok:
                    raise RuntimeError(outcome.describe())
                time.sleep(SETTLE)
                rows.append((f"shadow {share:g} %",
                             measure(url, EXAMPLE_TRANSACTION, CONCURRENCY, SECONDS)))
                reports[share] = json.load(urllib.request.urlopen(gateway + "/models/fraud/shadow"))
    print("| rule | req/s | p50 / p99 ms |")
    print("|---|---|---|")
    for rule, result in rows:
        print(f"| {rule} | {cell(result)} |")
    for index, share in enumerate(SHARES):
        # each shadow round against the round without a rule just before it
        pairs = [(rows[i][1]["rps"], rows[i + 1][1]["rps"]) for i in range(0, len(rows), 2)
                 if (i // 2) % len(SHARES) == index]
        ratios = sorted(s / n for n, s in pairs)
        ratio = statistics.median(ratios)
        print(f"shadow {share:g} % / none throughput, median of {len(ratios)} pairs: {ratio:.3f} "
              f"(cost {100 * (1 - ratio):.1f} %); pairs: {', '.join(f'{r:.3f}' for r in ratios)}")
        print("  report:", json.dumps({k: reports[share][k] for k in (
            "calls", "answered", "dropped", "errors", "agreement_rate", "served_latency_ms",
            "shadow_latency_ms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
