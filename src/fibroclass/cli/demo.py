"""`fibroclass demo`: simulate → index → split → train → register → score, then print a summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

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


def _summary(out: Path, score_dir: Path, seconds: float) -> None:
    from fibroclass.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri()
    auroc, run_id = _latest_test_auroc("fibroclass-train")
    qc = json.loads((score_dir / "plate_qc.json").read_text())
    wells = pd.read_csv(score_dir / "wells.csv")

    console.rule("[bold]fibroclass demo summary")
    console.print(
        f"donor-held-out test AUROC: [bold]{auroc:.3f}[/]" if auroc is not None else "test AUROC: n/a"
    )
    plates = qc.get("plates", qc) if isinstance(qc, dict) else {}
    for plate, q in plates.items():
        status = "[green]PASS[/]" if q.get("pass") else "[red]FAIL[/]"
        zp, sm = q.get("z_prime"), q.get("ssmd")
        zp_s = "n/a" if zp is None else f"{zp:.2f}"
        sm_s = "n/a" if sm is None else f"{sm:.1f}"
        reasons = "; ".join(q.get("reasons") or [])
        console.print(f"plate {plate}: Z′ = {zp_s}, SSMD = {sm_s} {status} {reasons}")

    rux = wells[(wells["compound"].str.lower() == "ruxolitinib") & (wells["role"] == "treatment")]
    if not rux.empty:
        table = Table(title="ruxolitinib rescue by dose (mean of replicate wells)")
        table.add_column("µM", justify="right")
        table.add_column("rescue %", justify="right")
        table.add_column("viability %", justify="right")
        by_dose = rux.groupby("concentration_uM")[["rescue_pct", "viability_pct"]].mean().sort_index()
        for conc, row in by_dose.iterrows():
            table.add_row(f"{conc:.4g}", f"{row['rescue_pct']:.0f}", f"{row['viability_pct']:.0f}")
        console.print(table)
    comp_path = score_dir / "compounds.csv"
    if comp_path.exists():
        from fibroclass.cli.score import print_calls

        print_calls(pd.read_csv(comp_path))
    failed = [p for p, q in plates.items() if not q.get("pass")]
    if failed:
        console.print(f"[bold red]plate QC failed for {', '.join(failed)}[/]: their compounds are not called")
    report = score_dir / "report.html"
    console.print(f"\noutputs: {score_dir}")
    console.print(f"report: {report if report.exists() else 'not written'}  (open it in a browser)")
    console.print(f"MLflow store: {uri}  run: {run_id}")
    console.print(f"browse runs:  mlflow ui --backend-store-uri {uri}")
    console.print(f"total demo time: {seconds:.0f} s")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's plates and outputs."),
        seed: int = typer.Option(0, "--seed", help="Simulation seed."),
        size: int = typer.Option(128, "--size", help="Field size in pixels."),
        fields: int = typer.Option(3, "--fields", help="Fields per well."),
        config: Path = typer.Option(
            Path("configs/train/default.yaml"), "--config", help="Training config (LightningCLI YAML)."
        ),
    ) -> None:
        """Run the whole path on simulated plates on this machine (CPU is fine, ~3-5 min).

        Example: fibroclass demo --out demo_out
        """
        t0 = time.perf_counter()
        out = out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        if not config.exists():
            raise FibroclassError(
                f"training config {config} not found (run the demo from the repository root)"
            )
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
            ["train", "--config", str(config), "--data.split", str(split_dir)],
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
            ],
            fresh_process=True,  # the registered model loads in a process that did not train it
        )
        _summary(out, score_dir, time.perf_counter() - t0)
