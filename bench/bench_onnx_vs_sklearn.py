"""The fraud model served by MLServer: ONNX Runtime vs the scikit-learn original, in one run.

Registers ``fraud`` (ONNX) and ``fraud_sklearn`` (the same trained forest) on a
throw-away stack and loads both with single-row requests at each concurrency,
alternating models so machine noise hits both.  Target: ONNX >= 5x sklearn.

    python bench/bench_onnx_vs_sklearn.py [--seconds 8] [--concurrency 1 16]
"""
from __future__ import annotations

import argparse
import sys

from harness import cell, measure, throwaway_stack

from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION
from mlplatform.pyfunc_models.wire import json_request

MODELS = ("fraud", "fraud_sklearn")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    print("| concurrency | ONNX req/s | p50 / p99 ms | sklearn req/s | p50 / p99 ms | ONNX / sklearn |")
    print("|---|---|---|---|---|---|")
    with throwaway_stack(MODELS) as settings:
        base = settings.url(settings.mlserver_http_port)
        for concurrency in args.concurrency:
            results = {model: measure(f"{base}/v2/models/{model}/infer",
                                      json_request(EXAMPLE_TRANSACTION, model),
                                      concurrency, args.seconds)
                       for model in MODELS}
            onnx, sklearn = results["fraud"], results["fraud_sklearn"]
            print(f"| {concurrency} | {cell(onnx)} | {cell(sklearn)} | "
                  f"{onnx['rps'] / sklearn['rps']:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
