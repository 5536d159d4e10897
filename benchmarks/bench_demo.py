"""(e) Wall time of `fibroclass demo` (simulate → index → split → train → register → score) from scratch.

python benchmarks/bench_demo.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "NO_ALBUMENTATIONS_UPDATE": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlruns.db",
        }
        cmd = [sys.executable, "-m", "fibroclass.cli", "demo", "--out", str(Path(tmp) / "demo_out")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(proc.returncode)
    rows, title = [], ""
    for line in proc.stdout.splitlines():
        if line.startswith("─"):
            title = line.strip("─ ")
        m = re.search(r"done in ([0-9.]+) s", line)
        if m and title:
            rows.append({"step": title, "seconds": float(m[1])})
    rows.append({"step": "total (fibroclass demo)", "seconds": seconds})
    print_table(f"demo (e): {machine()}", rows)


if __name__ == "__main__":
    main()
