"""(b) Scoring end to end (discovery excluded): fields/s, and its ratio to the read pass (a) on the same
plates with the same number of reader processes. On CUDA: channels_last, bf16 autocast (`--precision
auto`), `--compile` for torch.compile. `--engine ray` runs the field stage on Ray Data (a local cluster of
every core, started and shut down by the run, or `--ray-address`); its read floor uses as many readers
as the cluster has CPUs.

    python benchmarks/bench_score.py --plates 1 --wells 384 --fields 4 --size 1080 --backbone resnet18 \
        --crop 256 --device cuda --workers 16 --batch-size 256 [--compile] [--engine ray]
    python benchmarks/bench_score.py --plates 4 --skip-read   # (d) memory: run with 1 and 4 plates
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_read import channel_paths, read_pass  # noqa: E402
from common import machine, make_screen, peak_rss_mb, print_table, screen_index, timer  # noqa: E402

from fibroclass.models.classifier import FibroClassifier  # noqa: E402
from fibroclass.models.spec import ModelSpec  # noqa: E402
from fibroclass.scoring.config import ScoreConfig  # noqa: E402
from fibroclass.scoring.engines.local import resolve_num_workers, usable_cpus  # noqa: E402
from fibroclass.scoring.pipeline import score_index  # noqa: E402


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "fibroclass_bench")
    ap.add_argument("--plates", type=int, default=1)
    ap.add_argument("--wells", type=int, default=96)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--workers", default="auto", help="reader processes of the local engine (auto: CPUs - 1)")
    ap.add_argument("--engine", default="local", choices=["local", "ray"])
    ap.add_argument("--ray-address", default=None, help="--engine ray: join this cluster (default: a local one)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--skip-read", action="store_true", help="no read pass (memory runs)")
    ap.add_argument("--report", action="store_true", help="also write report.html (plots, Grad-CAM montage)")
    ap.add_argument(
        "--no-features", action="store_true", help="skip the per-field readout features (model path only)"
    )
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    root = a.root / f"w{a.wells}_f{a.fields}_s{a.size}"
    images, pm = make_screen(root, a.plates, a.wells, a.fields, a.size)
    index = screen_index(images, pm)
    n = len(index)
    torch.manual_seed(0)
    spec = ModelSpec(
        backbone=a.backbone, crop_size=a.crop, downsample=a.downsample, mean=[0.2, 0.2], std=[0.1, 0.1]
    )
    model = FibroClassifier(spec)
    cfg = ScoreConfig(
        batch_size=a.batch_size,
        num_workers=a.workers,
        device=a.device,
        precision=a.precision,
        compile=a.compile,
        report=a.report,
    )
    workers = resolve_num_workers(a.workers)
    readers = workers if a.engine == "local" else max(1, usable_cpus())
    read_s = float("nan") if a.skip_read else read_pass(channel_paths(index), readers)
    out = root / f"scores_{a.plates}p_{a.backbone}"
    shutil.rmtree(out, ignore_errors=True)  # score from scratch (no resume)
    cpu0 = _cpu_seconds()
    with timer() as t:
        res = score_index(
            index, model, out, cfg, progress=False, field_features=[] if a.no_features else None,
            engine=a.engine, ray_address=a.ray_address,
        )  # fmt: skip
    cores = (_cpu_seconds() - cpu0) / t["seconds"]  # this process + its finished children (reader workers)
    main_mb, worker_mb = peak_rss_mb()
    row = {
        "plates": a.plates,
        "fields": n,
        "backbone": a.backbone,
        "crop/ds": f"{a.crop}/{a.downsample}",
        "device": str(a.device),
        "precision": a.precision,
        "compile": a.compile,
        "features": not a.no_features,
        "report": a.report,
        "engine": a.engine,
        "workers": f"{a.workers} = {workers}" if a.workers == "auto" else workers,
        "readers (a)": readers,
        "score s": t["seconds"],
        "fields/s": n / t["seconds"],
        "read s": read_s,
        "score/read": read_s / t["seconds"],
        "CPU s / wall s": cores if a.engine == "local" else float("nan"),  # Ray's workers are not our children
        "peak RSS main MiB": main_mb,
        "peak RSS worker MiB": worker_mb,
        "load": round(os.getloadavg()[0], 1),
    }
    assert len(res.fields) == n
    print_table(f"scoring (b): {machine()}", [row])


if __name__ == "__main__":
    main()
