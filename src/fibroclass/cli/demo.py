"""`fibroclass demo`: simulate → index → split → train → register → score (with the simulated IL-6 and
wound-closure assays), then print a summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from fibroclass.configs import resolve_config
from fibroclass.errors import FibroclassError

console = Console()


def _step(title: str, argv: list[str], fresh_process: bool = False) -> None:
    """Run one `fibroclass` command in this process, or in a fresh one (as a user on another day would)."""
    from fibroclass.cli.app import main

    console.rule(f"[bold]{title}")
    console.print("$ fibroclass " + " ".join(argv), style="dim")
    t0 = time.perf_counter()
    if fresh_process:
        rc = subprocess.run([sys.executable, "-m", "fibroclass.cli", *argv], check=False).returncode
    else:
        rc = main(argv)
    if rc != 0:
        raise FibroclassError(f"demo step '{title}' failed (exit {rc}); rerun it with --debug for details")
    console.print(f"[green]done[/] in {time.perf_counter() - t0:.1f} s")


def _latest_test_auroc(experiment: str) -> tuple[float | None, str | None]:
    import mlflow

    runs = mlflow.search_runs(experiment_names=[experiment], order_by=["start_time DESC"], max_results=1)
    if runs.empty:
        return None, None
    col = "metrics.test/auroc"
    value = runs.iloc[0].get(col)
    return (None if value is None or pd.isna(value) else float(value)), runs.iloc[0]["run_id"]


def _summary(score_dir: Path, seconds: float) -> None:
    """The model's held-out AUROC, then `fibroclass score`'s own summary of the screen run."""
    from fibroclass.cli.score import print_summary
    from fibroclass.scoring.merge import load_outputs
    from fibroclass.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri()
    auroc, run_id = _latest_test_auroc("fibroclass-train")
    console.rule("[bold]fibroclass demo summary")
    console.print(
        f"donor-held-out test AUROC: [bold]{auroc:.3f}[/]" if auroc is not None else "test AUROC: n/a"
    )
    print_summary(load_outputs(score_dir), run_stats=False)
    console.print(f"report (interactive, opens offline): {score_dir / 'report.html'}")
    console.print(f"MLflow store: {uri}  training run: {run_id}")
    console.print(f"browse runs:  mlflow ui --backend-store-uri {uri}")
    console.print(f"total demo time: {seconds:.0f} s")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's plates and outputs."),
        seed: int = typer.Option(0, "--seed", help="Simulation seed."),
        size: int = typer.Option(128, "--size", help="Field size in pixels."),
        fields: int = typer.Option(3, "--fields", help="Fields per well."),
        config: str = typer.Option(
            "default",
            "--config",
            help="Training config: a shipped name (default, gpu_resnet18) or a YAML path.",
        ),
    ) -> None:
        """Run the whole path on simulated plates on this machine (CPU is fine, ~3-5 min).

        Example: fibroclass demo --out demo_out
        """
        t0 = time.perf_counter()
        out = out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        config_path = resolve_config("train", config)
        os.environ.setdefault("FIBROCLASS_PROGRESS", "1")
        common = ["--seed", str(seed), "--size", str(size), "--fields", str(fields)]
        _step("simulate a training set", ["simulate", "train", "--out", str(out / "train"), *common])
        _step(
            "simulate a 96-well screen plate", ["simulate", "screen", "--out", str(out / "screen"), *common]
        )
        index = out / "train_index.parquet"
        _step(
            "index the training plates",
            [
                "index",
                str(out / "train" / "images"),
                "--platemap",
                str(out / "train" / "platemap.csv"),
                "--out",
                str(index),
            ],
        )
        split_dir = out / "splits" / "demo"
        _step(
            "split by donor",
            ["split", str(index), "--by", "donor", "--out", str(split_dir), "--seed", str(seed)],
        )
        _step(
            "train, test on held-out donors, register",
            ["train", "--config", str(config_path), "--data.split", str(split_dir)],
        )
        score_dir = out / "score"
        _step(
            "score the screen plate with models:/fibroclass@challenger",
            [
                "score",
                str(out / "screen" / "images"),
                "--platemap",
                str(out / "screen" / "platemap.csv"),
                "--model",
                "models:/fibroclass@challenger",
                "--out",
                str(score_dir),
                "--assay",  # IL-6 (ELISA) and wound closure of the same wells, from the simulator's truth
                str(out / "screen" / "assays.csv"),
            ],
            fresh_process=True,  # the registered model loads in a process that did not train it
        )
        _summary(score_dir, time.perf_counter() - t0)
