#!/usr/bin/env python
"""Fuzz fibroclass's input handling and write a reproducible record of the run (docs/robustness.md).

Runs the hypothesis targets of `tests/fuzz/fuzz_targets.py` (plate-map CSVs, export file names + plate maps
through `build_index`, pixel data through `read_field` and scoring's field reader, damaged TIFF bytes, whole
damaged screens through `score`) from one seed. Every case is one of (`tests/fuzz/fuzz_record.py`):
- `ok`: the entry point returned output meeting its contract;
- `flagged_as_unreadable`: it raised the one-line FibroclassError (an unreadable or oversize file, a refused
  plate map or request); the record lists these by the class and module of the underlying exception, so
  decoder errors turned into "unreadable" are visible;
- `crashed`: any other exception, a broken contract, or a MemoryError/RecursionError flagged as unreadable.

The record (JSON): seed, git commit (and whether the tree had local changes), versions, machine, cases per
target, the outcomes, exceptions by class, seconds, and up to 3 crash examples per target.

Usage: python scripts/fuzz.py [--examples 250] [--seed N] [--targets platemap,index,field,tiff_bytes,score]
       [--json record.json]
Exit code 0 when no case crashed, 1 otherwise. Rerun a record with its `--seed` and `--examples`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fuzz"))

from fuzz_record import FuzzRecord  # noqa: E402
from fuzz_targets import TARGETS, fuzz_runs  # noqa: E402


def git_state() -> dict[str, object]:
    """The commit the run is on and whether tracked files differ from it."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    return {
        "commit": commit or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None,
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("fibroclass", "hypothesis", "tifffile", "numpy", "torch", "zarr"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=250, help="cases per target (default 250)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {TARGETS}")
    parser.add_argument("--json", type=Path, default=None, help="write the record as JSON here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}")
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # damaged files make tifffile log every tag

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    counter: Counter = Counter()
    record = FuzzRecord()
    runs = fuzz_runs(args.examples, counter, derandomize=False, rng_seed=seed, record=record)
    results = {}
    for name in targets:
        t0 = time.perf_counter()
        runs[name]()
        rec = record.target(name).to_dict()
        results[name] = {**rec, "seconds": round(time.perf_counter() - t0, 1)}
        print(
            f"{name:12s} {rec['cases']:5d} cases  ok {rec['ok']:5d}  flagged as unreadable "
            f"{rec['flagged_as_unreadable']:5d}  crashed {rec['crashed']:3d}  {results[name]['seconds']:7.1f} s",
            flush=True,
        )
        for cls, n in rec["crashed_by_class"].items():
            print(f"    crashed: {n} x {cls}", flush=True)
    totals = {
        k: sum(r[k] for r in results.values()) for k in ("cases", "ok", "flagged_as_unreadable", "crashed")
    }
    summary = {
        "seed": seed,
        "examples_per_target": args.examples,
        "started": started,
        "git": git_state(),
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "command": f"python scripts/fuzz.py --examples {args.examples} --seed {seed} --targets {','.join(targets)}",
        "totals": totals,
        "targets": results,
    }
    print(
        f"seed {seed}: {totals['cases']} cases, {totals['ok']} ok, {totals['flagged_as_unreadable']} flagged "
        f"as unreadable, {totals['crashed']} crashed (commit {summary['git']['commit']})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if totals["crashed"] else 0


if __name__ == "__main__":
    sys.exit(main())
