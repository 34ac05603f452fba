"""Resident memory of every process of a running stack (``mlplatform up``).

    python bench/stack_memory.py [--state-dir DIR] [--json]

Reads the processes ``up`` recorded in ``<state>/state.json`` and walks their
children (MLflow's web workers, MLServer's inference workers, job runners).
RSS counts pages shared between a parent and its forked children in each of
them, so the total is an upper bound; USS (memory unique to each process) is
printed beside it where the kernel reports it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import psutil

MB = 1024 * 1024


def stack_processes(state_dir: Path) -> Dict[str, List[psutil.Process]]:
    state = json.loads((state_dir / "state.json").read_text())
    found: Dict[str, List[psutil.Process]] = {}
    for name, component in state.get("components", {}).items():
        try:
            root = psutil.Process(component["pid"])
        except psutil.Error:
            continue
        found[name] = [root, *root.children(recursive=True)]
    return found


def measure(state_dir: Path) -> Dict[str, object]:
    rows, total_rss, total_uss, count = [], 0, 0, 0
    for component, processes in stack_processes(state_dir).items():
        for process in processes:
            try:
                with process.oneshot():
                    rss = process.memory_info().rss
                    try:
                        uss = process.memory_full_info().uss
                    except psutil.Error:
                        uss = 0
                    command = " ".join(process.cmdline()[:4])[:90]
            except psutil.Error:
                continue
            rows.append({"component": component, "pid": process.pid, "rss_mb": rss / MB,
                         "uss_mb": uss / MB, "command": command})
            total_rss += rss
            total_uss += uss
            count += 1
    return {"processes": count, "rss_mb": total_rss / MB, "uss_mb": total_uss / MB, "rows": rows}


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="the stack's state folder [MLPLATFORM_STATE_DIR or ./.mlplatform]")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.state_dir is None:
        from mlplatform.scripts.settings import PlatformSettings

        args.state_dir = PlatformSettings().state_path
    if not (args.state_dir / "state.json").exists():
        print(f"no running stack recorded in {args.state_dir} (run `mlplatform up`)",
              file=sys.stderr)
        return 1
    result = measure(args.state_dir)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'component':<10} {'pid':>7} {'RSS MB':>8} {'USS MB':>8}  command")
    for row in sorted(result["rows"], key=lambda r: (r["component"], -r["rss_mb"])):
        print(f"{row['component']:<10} {row['pid']:>7} {row['rss_mb']:>8.0f} {row['uss_mb']:>8.0f}"
              f"  {row['command']}")
    print(f"{'total':<10} {result['processes']:>7} {result['rss_mb']:>8.0f} "
          f"{result['uss_mb']:>8.0f}  ({result['processes']} processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
