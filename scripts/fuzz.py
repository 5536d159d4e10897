#!/usr/bin/env python
"""Fuzz fibroclass's input handling and record the result (docs/robustness.md).

Runs the hypothesis targets of `tests/fuzz/fuzz_targets.py` (plate-map CSVs, export file names + plate maps
through `build_index`, pixel data through `read_field` and scoring's field reader, damaged TIFF bytes) with
random seeds and counts the cases checked. A case passes when the entry point returns output meeting its
contract or raises FibroclassError; anything else is an unhandled exception and fails the run.

Usage: .venv/bin/python scripts/fuzz.py [--examples 250] [--seed N] [--targets platemap,index,field,tiff_bytes]
       [--json out.json]
Exit code 0 when no case failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fuzz"))

from fuzz_targets import TARGETS, fuzz_runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=250, help="cases per target (default 250)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {TARGETS}")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}")
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # damaged files make tifffile log every tag

    counter: Counter = Counter()
    runs = fuzz_runs(args.examples, counter, derandomize=False, rng_seed=seed)
    results = {}
    for name in targets:
        t0 = time.perf_counter()
        error = None
        try:
            runs[name]()
        except Exception as exc:  # noqa: BLE001 - the failure is what this script reports
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        results[name] = {
            "cases": counter[name],
            "failed": error is not None,
            "error": error,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        status = f"FAILED: {error}" if error else "ok"
        print(f"{name:12s} {counter[name]:5d} cases  {results[name]['seconds']:7.1f} s  {status}", flush=True)
    total = sum(r["cases"] for r in results.values())
    failed = [n for n, r in results.items() if r["failed"]]
    summary = {
        "seed": seed,
        "examples_per_target": args.examples,
        "total_cases": total,
        "unhandled": len(failed),
        "failed_targets": failed,
        "targets": results,
        "python": platform.python_version(),
    }
    print(f"seed {seed}: {total} cases, {len(failed)} failing target(s)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
