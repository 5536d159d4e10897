"""`fibroclass score`: score plates with a registered model and write the run folder (thin wrapper)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def print_summary(result) -> None:  # noqa: ANN001 - ScoreResult, imported lazily
    """Per-plate Z′/SSMD/pass table, reference rescue by dose, warnings and the output folder."""
    table = Table(title="plate QC")
    for col in ("plate", "Z′", "SSMD", "healthy", "disease", "fields flagged", "verdict"):
        table.add_column(col, justify="left" if col in ("plate", "verdict") else "right")
    for plate, q in result.plate_qc.items():
        verdict = "[green]pass[/]" if q["pass"] else "[red]FAIL[/]"
        table.add_row(
            plate,
            _fmt(q["z_prime"], ".2f"),
            _fmt(q["ssmd"], ".1f"),
            f"{_fmt(q['healthy_mean'], '.3g')} (n={q['n_healthy']})",
            f"{_fmt(q['disease_mean'], '.3g')} (n={q['n_disease']})",
            f"{q['n_fields_flagged']}/{q['n_fields']}",
            verdict,
        )
    console.print(table)
    failed = [p for p, q in result.plate_qc.items() if not q["pass"]]
    if failed:
        console.print(
            f"[bold red]PLATE QC FAILED[/] for {', '.join(failed)}: their compounds are not called "
            "(reasons below, also in plate_qc.json)"
        )
        for plate in failed:  # here, not among the warnings: those may be cut off after ten
            reasons = "; ".join(result.plate_qc[plate].get("reasons") or []) or "no reason recorded"
            console.print(f"  {plate}: {reasons}", markup=False)
    print_calls(result.compounds)
    doses = result.reference_doses
    if not doses.empty:
        ref = Table(title="reference compound: rescue by dose (mean of replicate wells)")
        for col in ("compound", "µM", "wells", "rescue %", "viability %"):
            ref.add_column(col, justify="left" if col == "compound" else "right")
        for row in doses.itertuples(index=False):
            ref.add_row(
                str(row.compound),
                f"{row.concentration_uM:.4g}",
                str(row.n_wells),
                _fmt(row.rescue_pct, ".0f"),
                _fmt(row.viability_pct, ".0f"),
            )
        console.print(ref)
    for warning in result.warnings[:10]:
        console.print(f"[yellow]warning:[/] {warning}")
    if len(result.warnings) > 10:
        console.print(f"[yellow]... {len(result.warnings) - 10} more warnings[/]")
    if result.chunks_reused:
        console.print(
            f"resumed: reused {result.chunks_reused} finished chunk(s) from {result.out_dir / 'parts'}"
        )
    if not result.merged:
        console.print("outputs already up to date: nothing rescored or rewritten")
    if "report.html" in result.files:
        console.print(f"report: {result.files['report.html']}")
    console.print(
        f"scored {len(result.fields)} fields / {len(result.wells)} wells in {result.seconds:.1f} s → {result.out_dir}"
    )


def print_calls(compounds) -> None:  # noqa: ANN001 - pandas DataFrame (compounds.csv)
    """One line per compound: call, EC50 (with its qualifier and CI), max rescue, min viability, why."""
    if compounds is None or compounds.empty or "call" not in compounds:
        return
    table = Table(title="compound calls")
    for col in ("compound", "call", "EC50 µM (95% CI)", "max rescue %", "min viability %", "why"):
        table.add_column(col, justify="right" if "%" in col else "left", overflow="fold")
    colors = {"hit": "green", "toxic": "red", "off_target": "magenta", "inactive": "dim"}
    for row in compounds.to_dict("records"):
        ec50 = row.get("ec50_uM")
        ec50_text = "n/a"
        if isinstance(ec50, float) and math.isfinite(ec50):
            qualifier = row.get("ec50_qualifier") if isinstance(row.get("ec50_qualifier"), str) else ""
            ec50_text = f"{qualifier} {ec50:.3g}".strip()
            low, high = row.get("ec50_ci_low_uM"), row.get("ec50_ci_high_uM")
            if isinstance(low, float) and math.isfinite(low) and math.isfinite(high):
                ec50_text += f" ({low:.3g}-{high:.3g})"
        call = str(row.get("call", ""))
        table.add_row(
            str(row.get("compound")),
            f"[{colors.get(call, 'yellow')}]{call}[/]",
            ec50_text,
            _fmt(row.get("max_rescue_pct"), ".0f"),
            _fmt(row.get("min_viability_pct"), ".0f"),
            str(row.get("call_reason", "") if isinstance(row.get("call_reason"), str) else ""),
        )
    console.print(table)


def log_to_mlflow(result, model: str, experiment: str) -> None:  # noqa: ANN001 - ScoreResult
    """Log the scoring run to MLflow (`tracking.scoring`); a tracking failure is a warning, not a loss."""
    from mlflow.exceptions import MlflowException

    from fibroclass.tracking.scoring import log_scoring_run

    calls = result.compounds["call"].value_counts().to_dict() if "call" in result.compounds else {}
    try:
        run_id = log_scoring_run(result.out_dir, model, result.plate_qc, calls, experiment)
    except (MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        console.print(
            f"[yellow]warning:[/] outputs written, but MLflow logging failed: {reason} (--no-mlflow skips it)"
        )
        return
    console.print(f"MLflow: experiment {experiment}, run {run_id}")


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score(
        roots: list[Path] = typer.Argument(
            ..., metavar="DIR...", help="Plate image folders (a plate, plates, or an export)."
        ),
        platemap: Path = typer.Option(..., "--platemap", help="Plate map CSV (DESIGN.md contract)."),
        model: str = typer.Option(..., "--model", help="MLflow model URI, e.g. models:/fibroclass@champion."),
        out: Path = typer.Option(..., "--out", help="Output folder (created; files are replaced)."),
        config: Path | None = typer.Option(
            None, "--config", help="Score config YAML (default: built-in = configs/score/default.yaml)."
        ),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Tiles per forward pass."),
        device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
        num_workers: int | None = typer.Option(None, "--num-workers", help="Field-reading worker processes."),
        trust_pickle: bool = typer.Option(
            False, "--trust-pickle", help="Allow loading a pickled model (only for models you trust)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        shard: str | None = typer.Option(
            None, "--shard", help="K/N: score only shard K (0-based) of N plate shards into OUT/parts/."
        ),
        merge: bool = typer.Option(
            False, "--merge", help="Only merge OUT/parts/ of finished shards into the outputs (no scoring)."
        ),
        precision: str | None = typer.Option(None, "--precision", help="auto (bf16 on CUDA), fp32 or bf16."),
        compile_model: bool | None = typer.Option(
            None, "--compile/--no-compile", help="torch.compile the model (GPU; slow first batches)."
        ),
        track_mlflow: bool = typer.Option(
            True, "--mlflow/--no-mlflow", help="Log the run (model version, plate QC, report) to MLflow."
        ),
        experiment: str = typer.Option(
            "fibroclass-score", "--experiment", help="MLflow experiment of the scoring runs."
        ),
    ) -> None:
        """Score drug-screen plates: disease score per field, rescue % per well vs each plate's controls.

        Writes fields.parquet, embeddings.npy, well_embeddings.npy, wells.csv, compounds.csv (4PL fits and
        hit / inactive / toxic / off_target / inconclusive calls), plate_qc.json, run.json and report.html
        into --out, and logs the run to MLflow (experiment fibroclass-score; --no-mlflow skips it). Progress is kept per plate chunk in OUT/parts/: re-running an interrupted
        command resumes, re-running a finished one does nothing. With --shard K/N (same arguments on every
        shard, e.g. one per GPU or node) the last shard to finish merges; --merge merges explicitly.

        Example: fibroclass score plates/P001 --platemap platemap.csv --model models:/fibroclass@champion --out scores/P001
        """
        from fibroclass.scoring.parts import parse_shard
        from fibroclass.scoring.pipeline import ShardResult
        from fibroclass.scoring.pipeline import score as run_score

        shard_kn = parse_shard(shard) if shard is not None else None
        show = progress and (sys.stderr.isatty() or os.environ.get("FIBROCLASS_PROGRESS") == "1")
        result = run_score(
            roots,
            platemap,
            model,
            out,
            config=config,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            progress=show,
            trust_pickle=trust_pickle,
            shard=shard_kn,
            merge_only=merge,
            precision=precision,
            compile=compile_model,
        )
        if isinstance(result, ShardResult):
            console.print(
                f"shard {shard}: {len(result.plates)} plate(s), {result.chunks_scored} chunk(s) scored, "
                f"{result.chunks_reused} reused in {result.seconds:.1f} s; waiting for "
                f"{len(result.missing_plates)} plate(s) of other shards (the last shard merges, or --merge)"
            )
            return
        print_summary(result)
        if track_mlflow:
            log_to_mlflow(result, model, experiment)
