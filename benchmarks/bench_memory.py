"""(d) Peak memory of scoring 1 vs 4 plates (each run in a fresh process; `bench_score.py --skip-read`).

Reports the scoring process's peak RSS and the largest reader worker's peak RSS. Field results are
streamed to OUT/parts per plate chunk and merged plate by plate, so both should stay flat in the
number of plates; the time should grow linearly with the number of fields.

    python benchmarks/bench_memory.py --plates 1 4 --wells 96 --fields 4 --size 1080 --workers 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plates", type=int, nargs="+", default=[1, 4])
    a, rest = ap.parse_known_args(argv)
    rows = []
    for n in a.plates:
        cmd = [
            sys.executable,
            str(Path(__file__).with_name("bench_score.py")),
            "--plates",
            str(n),
            "--skip-read",
            *rest,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        out = proc.stdout
        row = json.loads(next(ln[5:] for ln in out.splitlines() if ln.startswith("JSON ")))
        rows.append(
            {
                k: row[k]
                for k in (
                    "plates",
                    "fields",
                    "score s",
                    "fields/s",
                    "peak RSS main MiB",
                    "peak RSS worker MiB",
                )
            }
        )
    print_table(f"scoring memory (d): {machine()}", rows)


if __name__ == "__main__":
    main()
