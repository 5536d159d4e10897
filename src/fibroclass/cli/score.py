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
    console.print(
        f"scored {len(result.fields)} fields / {len(result.wells)} wells in {result.seconds:.1f} s → {result.out_dir}"
    )


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
    ) -> None:
        """Score drug-screen plates: disease score per field, rescue % per well vs each plate's controls.

        Writes fields.parquet, embeddings.npy, well_embeddings.npy, wells.csv, compounds.csv, plate_qc.json
        and run.json into --out. Progress is kept per plate chunk in OUT/parts/: re-running an interrupted
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
