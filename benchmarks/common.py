"""Shared benchmark helpers: synthetic screen plates on disk, the machine description, timing, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

ROWS = "ABCDEFGHIJKLMNOP"


def well_names(n_wells: int) -> list[str]:
    """Plate-order well names of a 96- (8 × 12) or 384-well (16 × 24) layout, first `n_wells`."""
    rows, cols = (8, 12) if n_wells <= 96 else (16, 24)
    return [f"{r}{c:02d}" for r in ROWS[:rows] for c in range(1, cols + 1)][:n_wells]


def make_plate(root: Path, plate: str, n_wells: int, fields: int, size: int, seed: int = 0) -> None:
    """ImageXpress-named uint16 TIFFs (`{plate}_{well}_s{site}_w{1,2}.tif`, uncompressed, as exported).

    Pixels are a textured base image shifted per field plus noise, so every file has distinct content
    (decode cost is that of real exports; the content itself is irrelevant to throughput).
    """
    folder = root / plate
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = [rng.integers(500, 30000, (size, size), dtype=np.uint16) for _ in range(2)]
    for w, well in enumerate(well_names(n_wells)):
        for site in range(1, fields + 1):
            shift = (w * 7 + site * 13) % size
            for ch in (1, 2):
                path = folder / f"{plate}_{well}_s{site}_w{ch}.tif"
                if not path.exists():
                    tifffile.imwrite(path, np.roll(base[ch - 1], shift, axis=1))


def platemap(plates: Sequence[str], n_wells: int) -> pd.DataFrame:
    """Plate map: columns 1-2 controls (healthy/disease, 4 donors each), the rest a 4-dose treatment."""
    rows = []
    for plate in plates:
        for i, well in enumerate(well_names(n_wells)):
            col = int(well[1:])
            role = "healthy" if col == 1 else "disease" if col == 2 else "treatment"
            rows.append(
                {
                    "plate": plate,
                    "well": well,
                    "role": role,
                    "compound": "DMSO" if role != "treatment" else f"c{i % 10}",
                    "concentration_uM": 0.0 if role != "treatment" else [0.01, 0.1, 1.0, 10.0][i % 4],
                    "donor": f"{'HD' if col == 1 else 'GOF'}{ROWS.index(well[0]) % 4 + 1}"
                    if role != "treatment"
                    else "",
                    "genotype": "healthy" if col == 1 else "GoF",
                }
            )
    return pd.DataFrame(rows)


def make_screen(root: Path, n_plates: int, n_wells: int, fields: int, size: int) -> tuple[Path, Path]:
    """`n_plates` plates under `root/images` and their plate map; reuses files already there."""
    plates = [f"BP{p + 1:02d}" for p in range(n_plates)]
    for p, plate in enumerate(plates):
        make_plate(root / "images", plate, n_wells, fields, size, seed=p)
    pm = root / "platemap.csv"
    platemap(plates, n_wells).to_csv(pm, index=False)
    return root / "images", pm


def screen_index(images: Path, pm: Path) -> pd.DataFrame:
    from fibroclass.io.index import build_index

    return build_index(images, pm).index


def machine() -> str:
    """One line: CPU model and cores, RAM, load, torch/CUDA device."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        kb = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {cores} cores{mem}, load {load:.1f}, {gpu}, torch {torch.__version__}"


def peak_rss_mb() -> tuple[float, float]:
    """Peak RSS (MiB) of this process and of its largest finished child (e.g. a DataLoader worker)."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kb / 1024, child_kb / 1024


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0


class GpuSampler:
    """Samples `nvidia-smi` GPU utilization every 0.2 s in the background (no-op without it)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            self._proc = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        self.samples = [float(v) for v in out.split() if v.replace(".", "", 1).isdigit()]

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def print_table(title: str, rows: list[dict]) -> None:
    """A markdown table (paste into benchmarks/README.md) and one JSON line per row."""
    if not rows:
        return
    cols = list(rows[0])
    print(f"\n{title}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    for r in rows:
        print("JSON " + json.dumps(r))
