"""What a shadow costs: /forward throughput at concurrency 16 with and without one.

A throw-away stack serves ``fraud``; a second version is registered as challenger.
Closed-loop load (16 clients, ``SECONDS`` each round) on ``/forward?model=fraud``,
alternating rounds without a rule and with ``mlplatform route fraud --shadow
challenger`` (every call copied to the challenger in the background): A B A B, so
drift on the machine hits both.  Goal (lifecycle issue): the shadow costs <= 10 %
of the throughput.  The shadow's own report (copies answered, dropped) is printed.

    python bench/bench_shadow.py
"""
from __future__ import annotations

import json
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

SECONDS = 15.0
CONCURRENCY = 16
SETTLE = 12.0  # the gateway reads the rule within REGISTRY_TTL (10 s)


def main() -> int:
    with throwaway_stack(["fraud"]) as settings:
        tracking = stack.tracking_uri(settings)
        register("fraud", tracking, alias="challenger", force=True)
        serving = Serving(MlflowClient(tracking_uri=tracking), stack.local_target(settings))
        gateway = settings.url(settings.gateway_port)
        url = gateway + "/forward?model=fraud"
        rows = []
        for round_ in range(2):
            serving.clear_route("fraud")
            time.sleep(SETTLE)
            rows.append(("none", measure(url, EXAMPLE_TRANSACTION, CONCURRENCY, SECONDS)))
            outcome = serving.route("fraud", SHADOW, "challenger")
            if not outcome.ok:
                raise RuntimeError(outcome.describe())
            time.sleep(SETTLE)
            rows.append(("shadow", measure(url, EXAMPLE_TRANSACTION, CONCURRENCY, SECONDS)))
        report = json.load(urllib.request.urlopen(gateway + "/models/fraud/shadow"))
    print("| round | rule | req/s | p50 / p99 ms |\n|---|---|---|---|")
    for index, (rule, result) in enumerate(rows):
        print(f"| {index // 2 + 1} | {rule} | {cell(result)} |")
    plain = sum(r["rps"] for rule, r in rows if rule == "none")
    shadowed = sum(r["rps"] for rule, r in rows if rule == "shadow")
    print(f"shadow / none throughput: {shadowed / plain:.3f} "
          f"(cost {100 * (1 - shadowed / plain):.1f} %)")
    print("shadow report:", json.dumps({k: report[k] for k in (
        "calls", "answered", "dropped", "errors", "agreement_rate",
        "mean_abs_probability_delta", "served_latency_ms", "shadow_latency_ms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
