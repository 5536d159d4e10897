"""(c) Training throughput: crops/s through the real DataModule (memory-mapped field cache, DataLoader
workers, pinned memory on CUDA, augmentation) and FibroModule, plus how long each step waited for
data and the mean GPU utilization (nvidia-smi) on CUDA.

    python benchmarks/bench_train.py --backbone resnet18 --crop 256 --batch-size 256 --workers 16 \
        --accelerator gpu --precision bf16-mixed --steps 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GpuSampler, machine, make_screen, print_table, screen_index  # noqa: E402

from fibroclass.data.datamodule import FibroDataModule  # noqa: E402
from fibroclass.data.splits import make_split, write_split  # noqa: E402
from fibroclass.io.index import write_index  # noqa: E402
from fibroclass.models.module import FibroModule  # noqa: E402


class Throughput(L.Callback):
    """Wall time of steps after `warmup`, and the part of it spent waiting for the next batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = self.t_end = None
        self.wait = 0.0
        self.samples = 0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        now = time.perf_counter()
        if self.t_end is not None and trainer.global_step > self.warmup:
            self.wait += now - self.t_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._sync()
        self.t_end = time.perf_counter()
        if trainer.global_step == self.warmup:
            self.t0 = self.t_end
        elif trainer.global_step > self.warmup:
            self.samples += len(batch[0]) * trainer.world_size


def make_split_dir(root: Path, wells: int, fields: int, size: int) -> Path:
    images, pm = make_screen(root, 1, wells, fields, size)
    index = screen_index(images, pm)
    index_path = write_index(index, root / "index.parquet")
    params = {"by": "donor", "val_frac": 0.25, "test_frac": 0.25, "seed": 0}
    assignment = make_split(index, by="donor", val_frac=0.25, test_frac=0.25, seed=0)
    return write_split(index, index_path, assignment, root / "splits" / "bench", params)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "fibroclass_bench")
    ap.add_argument("--wells", type=int, default=96)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--devices", default="1")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-augment", action="store_true")
    a = ap.parse_args(argv)
    root = a.root / f"w{a.wells}_f{a.fields}_s{a.size}"
    split = make_split_dir(root, a.wells, a.fields, a.size)
    dm = FibroDataModule(
        str(split),
        crop_size=a.crop,
        downsample=a.downsample,
        crops_per_field=4096,  # one long epoch
        batch_size=a.batch_size,
        num_workers=a.workers,
        augment=not a.no_augment,
        cache_dir=str(root / "field_cache"),
    )
    t_cache = time.perf_counter()
    dm.prepare_data()  # decode every field once (reused by later runs)
    t_cache = time.perf_counter() - t_cache
    meter = Throughput(a.warmup)
    trainer = L.Trainer(
        accelerator=a.accelerator,
        devices=int(a.devices) if a.devices.isdigit() else a.devices,
        precision=a.precision,
        max_steps=a.warmup + a.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        benchmark=torch.cuda.is_available(),
        callbacks=[meter],
    )
    with GpuSampler() as gpu:
        trainer.fit(FibroModule(backbone=a.backbone), datamodule=dm)
    if not trainer.is_global_zero:
        return
    total = meter.t_end - meter.t0
    row = {
        "backbone": a.backbone,
        "crop": a.crop,
        "batch": a.batch_size,
        "devices": trainer.world_size,
        "precision": a.precision,
        "workers": a.workers,
        "steps": a.steps,
        "crops/s": meter.samples / total,
        "data wait %": 100 * meter.wait / total,
        "GPU util %": gpu.mean,
        "cache build s": t_cache,
    }
    print_table(f"training (c): {machine()}", [row])


if __name__ == "__main__":
    main()
