"""`mlplatform batch`: the local engine against Spark's local mode, same file, same model.

A throw-away stack registers ``fraud`` (ONNX); ``--rows`` generated transactions (1M by
default) as Parquet; each engine scores the file into Parquet, one warm-up run each on a
small file first (Spark's JVM start, the model's first load), then ``--repeats`` timed
runs, alternating engines.  Rows/s are end to end: read, score, write.

    python bench/bench_batch_engines.py [--rows 1000000] [--repeats 2] [--master local[2]]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from harness import throwaway_stack

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import FEATURES
from mlplatform.scripts import stack
from mlplatform.scripts.batch_scoring import score_local, score_spark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    with throwaway_stack(["fraud"]) as settings, tempfile.TemporaryDirectory() as folder:
        os.environ["MLFLOW_TRACKING_URI"] = stack.tracking_uri(settings)
        folder = Path(folder)
        rows = generate_transactions(args.rows, seed=3)[list(FEATURES)]
        rows.insert(0, "id", range(len(rows)))
        source = folder / "rows.parquet"
        rows.to_parquet(source, index=False)
        rows.head(1000).to_parquet(folder / "small.parquet", index=False)
        engines = {"local": lambda out: score_local("models:/fraud/1", source, out),
                   "spark": lambda out: score_spark("models:/fraud/1", source, out, args.master)}
        score_local("models:/fraud/1", folder / "small.parquet", folder / "warm-local.parquet")
        score_spark("models:/fraud/1", folder / "small.parquet", folder / "warm-spark.parquet",
                    args.master)
        rates = {name: [] for name in engines}
        for attempt in range(args.repeats):
            for name, run in engines.items():
                result = run(folder / f"{name}-{attempt}.parquet")
                assert result.rows == args.rows
                rates[name].append(result.rows_per_second)
                print(f"  {name}: {result.rows_per_second:,.0f} rows/s ({result.seconds:.1f} s)",
                      flush=True)
    local, spark = (statistics.median(rates[n]) for n in ("local", "spark"))
    print(f"\n| engine ({args.rows:,} rows, Parquet in and out) | rows/s (median of "
          f"{args.repeats}) | x local |")
    print("|---|---|---|")
    print(f"| local (one process, 50k-row chunks) | {local:,.0f} | 1.00 |")
    print(f"| spark, {args.master} | {spark:,.0f} | {spark / local:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
