"""`fibroclass score`: score plates with a registered model and write the run folder (thin wrapper)."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fibroclass.errors import FibroclassError

console = Console()


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def print_summary(result, run_stats: bool = True) -> None:  # noqa: ANN001 - ScoreResult, imported lazily
    """Per-plate Z′/SSMD/pass table, calls, reference rescue by dose, warnings and the output folder;
    `run_stats` adds what this run did (resumed, up to date, seconds)."""
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
    print_feature_errors(result.plate_qc)
    print_calls(result.compounds)
    print_assays(result.compounds, result.plate_qc)
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
    if run_stats and result.chunks_reused:
        console.print(
            f"resumed: reused {result.chunks_reused} finished chunk(s) from {result.out_dir / 'parts'}"
        )
    if run_stats and not result.merged:
        console.print("outputs already up to date: nothing rescored or rewritten")
    if "report.html" in result.files:
        console.print(f"report: {result.files['report.html']}")
    for problem in result.report_problems:  # here, not only among the warnings (those are cut at ten)
        console.print(f"[bold red]REPORT PART FAILED[/]: {escape(problem)}", highlight=False)
    took = f" in {result.seconds:.1f} s" if run_stats else ""
    console.print(f"scored {len(result.fields)} fields / {len(result.wells)} wells{took} → {result.out_dir}")


def print_feature_errors(plate_qc: dict[str, dict]) -> None:
    """One line per plate where a per-field feature raised: how many fields, which feature, which exception
    (those fields are flagged and left out of the well means)."""
    for plate, q in plate_qc.items():
        n = int(q.get("n_feature_errors") or 0)
        if not n:
            continue
        kinds = ", ".join(
            f"{name} raised {kind} ×{count}"
            for name, by_kind in (q.get("feature_errors") or {}).items()
            for kind, count in by_kind.items()
        )
        console.print(
            f"[bold red]FEATURE ERRORS[/] on {escape(plate)}: {n} field(s) flagged ({escape(kinds)}); "
            "messages in the feature_error column of fields.parquet",
            highlight=False,
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


def print_assays(compounds, plate_qc) -> None:  # noqa: ANN001 - compounds.csv, plate_qc.json plates
    """Per secondary readout (`--assay`): its control window per plate, then morphology vs readout
    rescue per compound (max rescue, Spearman ρ across doses, discordant)."""
    if compounds is None or "discordant" not in compounds:
        return
    names = [c[: -len("_discordant")] for c in compounds.columns if c.endswith("_discordant")]
    for name in names:
        entries = {p: q["assays"][name] for p, q in plate_qc.items() if name in (q.get("assays") or {})}
        label = next((str(a.get("label") or name) for a in entries.values()), name)
        windows = [
            f"{plate} {_fmt(a.get('fold_disease_vs_healthy'), '.1f')}x, Z′ {_fmt(a.get('z_prime'), '.2f')}"
            for plate, a in entries.items()
        ]
        table = Table(title=f"morphology vs {label} rescue (disease/healthy: {'; '.join(windows) or 'n/a'})")
        for col in ("compound", "call", "morphology max %", f"{label} max %", "ρ doses", "discordant"):
            table.add_column(col, justify="left" if col in ("compound", "call", "discordant") else "right")
        for row in compounds.to_dict("records"):
            bad = bool(row.get(f"{name}_discordant"))
            table.add_row(
                str(row.get("compound")),
                str(row.get("call", "")),
                _fmt(row.get("max_rescue_pct"), ".0f"),
                _fmt(row.get(f"{name}_max_rescue_pct"), ".0f"),
                _fmt(row.get(f"{name}_rho"), ".2f"),
                "[bold magenta]yes[/]" if bad else "no",
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


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "int | str": str}


def config_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` (whose last parameter is `**overrides`) one option per `SCORE_OPTIONS` entry, typed
    from the ScoreConfig attribute it sets; given values arrive in `overrides` under the attribute name."""
    from fibroclass.scoring.config import SCORE_OPTIONS, ScoreConfig

    types = {f.name: str(f.type) for f in dataclasses.fields(ScoreConfig)}
    sig = inspect.signature(command)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for flag, (attr, help_text) in SCORE_OPTIONS.items():
        option = typer.Option(None, flag, help=help_text)
        params.append(
            inspect.Parameter(
                attr, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_TYPES[types[attr]] | None
            )
        )
    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return command


def register(app: typer.Typer) -> None:
    @app.command("score")
    @config_options
    def score(
        roots: list[Path] = typer.Argument(
            ..., metavar="DIR...", help="Plate image folders (a plate, plates, or an export)."
        ),
        platemap: Path = typer.Option(..., "--platemap", help="Plate map CSV (DESIGN.md contract)."),
        model: str = typer.Option(..., "--model", help="MLflow model URI, e.g. models:/fibroclass@champion."),
        out: Path = typer.Option(..., "--out", help="Output folder (created; files are replaced)."),
        config: str | None = typer.Option(
            None,
            "--config",
            help="Score config: a YAML path or a shipped name (default = configs/score/default.yaml).",
        ),
        trust_pickle: bool = typer.Option(
            False, "--trust-pickle", help="Allow loading a pickled model (only for models you trust)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        plate: list[str] | None = typer.Option(
            None, "--plate", help="Score only this plate into OUT/parts/ (repeatable; one job per plate), no merge."
        ),
        merge: bool = typer.Option(
            False, "--merge", help="Only merge OUT/parts/ of plates scored by --plate jobs into the outputs."
        ),
        engine: str = typer.Option(
            "local", "--engine", help="local (this machine, every core) or ray (Ray Data: pip install 'fibroclass[ray]')."
        ),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="Ray cluster to join: auto or ray://HOST:PORT (default: start a local one)."
        ),
        track_mlflow: bool = typer.Option(
            True, "--mlflow/--no-mlflow", help="Log the run (model version, plate QC, report) to MLflow."
        ),
        experiment: str = typer.Option(
            "fibroclass-score", "--experiment", help="MLflow experiment of the scoring runs."
        ),
        assay: list[Path] | None = typer.Option(
            None,
            "--assay",
            help="Secondary per-well readouts (CSV: plate, well, one column per readout, e.g. il6_pg_ml); "
            "repeat for several files. Units in the header ('il6 [pg/mL]') or FILE.yaml beside it.",
        ),
        **overrides: Any,  # the config options of SCORE_OPTIONS, added by config_options()
    ) -> None:
        """Score drug-screen plates: disease score per field, rescue % per well vs each plate's controls.

        Writes fields.parquet, embeddings.npy, well_embeddings.npy, wells.csv, compounds.csv (4PL fits and
        hit / inactive / toxic / off_target / inconclusive calls), plate_qc.json, run.json and report.html
        into --out, and logs the run to MLflow (experiment fibroclass-score; --no-mlflow skips it). Progress is
        kept per plate chunk in OUT/parts/: re-running an interrupted command resumes, re-running a finished
        one does nothing; a second run into an OUT that a live run is writing is refused. Many plates: --engine
        ray (a Ray cluster), or one --plate job per plate (SLURM array, Nextflow, Snakemake; same arguments)
        followed by one --merge.

        --assay adds readouts measured on the same wells (ELISA IL-6, wound closure %): each is normalized to
        the plate's controls like rescue_pct (<name>_rescue_pct in wells.csv), fitted with the same 4PL and
        compared with the morphology rescue per compound (<name>_rho, <name>_discordant in compounds.csv).

        Example: fibroclass score plates/P001 --platemap platemap.csv --model models:/fibroclass@champion --out scores/P001
        """
        from fibroclass.io.assays import read_assays
        from fibroclass.progress import show_progress
        from fibroclass.scoring.config import load_score_config
        from fibroclass.scoring.engines import make_engine
        from fibroclass.scoring.pipeline import PartsResult
        from fibroclass.scoring.pipeline import score as run_score
        from fibroclass.tracking.models import load_classifier

        assays = [str(a) for a in assay] if assay else None
        cfg = load_score_config(config).with_overrides(**overrides, assays=assays)  # before any model I/O
        if cfg.assays:
            read_assays(cfg.assays)  # a bad readout file is a one-line error before the model loads
        scoring_engine = make_engine(engine, ray_address)  # a missing Ray, too
        if plate and merge:
            raise FibroclassError("--plate and --merge: score the plates first, then merge them in a separate run")
        show = show_progress(progress)
        result = run_score(
            roots,
            platemap,
            load_classifier(model, trust_pickle=trust_pickle),
            out,
            config=cfg,
            progress=show,
            model_uri=model,
            plates=plate or None,
            merge_only=merge,
            engine=scoring_engine,
        )
        if isinstance(result, PartsResult):
            for warning in result.warnings:
                console.print(f"[yellow]warning:[/] {warning}")
            console.print(
                f"plate(s) {', '.join(result.plates)}: {result.chunks_scored} chunk(s) scored, "
                f"{result.chunks_reused} reused in {result.seconds:.1f} s → {out / 'parts'}; "
                f"{result.other_plates} other plate(s) in the index. When every plate is scored, merge with "
                "the same command, --merge instead of --plate."
            )
            return
        print_summary(result)
        if track_mlflow:
            log_to_mlflow(result, model, experiment)
