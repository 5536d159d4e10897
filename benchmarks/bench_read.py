"""(a) The floor: a pure parallel read pass over a plate's fields (decode to float32, nothing else).

Same reader processes and the same `read_field` as scoring (a DataLoader with N workers, one field per
item), but each worker returns only a checksum, so this measures decoding the TIFFs and nothing more.

    python benchmarks/bench_read.py --wells 384 --fields 4 --size 1080 --workers 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, make_screen, print_table, screen_index, timer  # noqa: E402

from fibroclass.io.images import read_field  # noqa: E402
from fibroclass.schema import path_col  # noqa: E402


class _ReadOnly(Dataset):
    def __init__(self, paths: Sequence[Sequence[str]]) -> None:
        self.paths = [list(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> float:
        return float(read_field(self.paths[i])[:, ::97, ::97].sum())


def read_pass(paths: Sequence[Sequence[str]], workers: int) -> float:
    """Seconds to decode every field once with `workers` reader processes (0: in this process)."""
    loader = DataLoader(
        _ReadOnly(paths), batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None
    )
    with timer() as t:
        total = sum(loader)
    assert np.isfinite(total)
    return t["seconds"]


def channel_paths(index, channels=("actin", "nuclei")) -> list[list[str]]:  # noqa: ANN001
    return index[[path_col(c) for c in channels]].values.tolist()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "fibroclass_bench")
    ap.add_argument("--wells", type=int, default=96)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=2, help="passes; the first warms the page cache")
    a = ap.parse_args(argv)
    root = a.root / f"w{a.wells}_f{a.fields}_s{a.size}"
    images, pm = make_screen(root, 1, a.wells, a.fields, a.size)
    paths = channel_paths(screen_index(images, pm))
    mb = sum(os.path.getsize(p) for row in paths for p in row) / 2**20
    rows = []
    for r in range(a.repeat):
        s = read_pass(paths, a.workers)
        rows.append(
            {
                "pass": r + 1,
                "fields": len(paths),
                "files": 2 * len(paths),
                "MiB": round(mb),
                "workers": a.workers,
                "seconds": s,
                "fields/s": len(paths) / s,
                "MiB/s": mb / s,
            }
        )
    print_table(f"read pass (a): {machine()}", rows)


if __name__ == "__main__":
    main()
