"""`fibroclass evaluate lodo|model|card`: donor cross-validation, a registered model on a split, model cards."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fibroclass.errors import FibroclassError

console = Console()


def _fmt(value: object, spec: str = ".3f") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "n/a" if isinstance(value, float) and math.isnan(value) else format(value, spec)
    return str(value)


def _print_comparison(comparison, models: list[str]) -> None:  # noqa: ANN001 - DataFrame
    table = Table(title="held-out donors: CNN vs classical baselines (AUROC vs other-class fields / mean p)")
    table.add_column("donor")
    table.add_column("class")
    for name in models:
        table.add_column(f"{name} AUROC", justify="right")
        table.add_column(f"{name} mean p", justify="right")
    for row in comparison.to_dict("records"):
        label = row.get("label")
        cls = (
            ""
            if label is None or (isinstance(label, float) and math.isnan(label))
            else ("GoF", "healthy")[label == 0]
        )
        cells = [str(row["donor"]), cls]
        for name in models:
            cells += [
                _fmt(row.get(f"{name}_auroc", float("nan"))),
                _fmt(row.get(f"{name}_mean_p", float("nan"))),
            ]
        table.add_row(*cells)
    console.print(table)


def _print_summary(summary, prefix: str) -> None:  # noqa: ANN001 - CVSummary
    pooled, null = summary.pooled, summary.shuffled
    line = (
        f"{prefix}: pooled AUROC {_fmt(pooled['auroc'])}, balanced accuracy {_fmt(pooled['balanced_accuracy'])}, "
        f"n = {pooled['n']} fields"
    )
    if "ece_before" in pooled:
        line += f"; ECE {_fmt(pooled['ece_before'])} → {_fmt(pooled['ece_after'])} after temperature scaling"
    console.print(line)
    console.print(
        f"shuffled-label baseline ({null['level']} permutations, n = {null['n_permutations']}): AUROC "
        f"{_fmt(null['auroc_null_mean'])} ± {_fmt(null['auroc_null_std'])}, permutation p = {_fmt(null['p_value'])}"
    )


def register(app: typer.Typer) -> None:
    ev = typer.Typer(
        help="Honest evaluation: donor cross-validation, a registered model on a split, model cards.",
        no_args_is_help=True,
    )

    @ev.command("lodo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def lodo_cmd(
        ctx: typer.Context,
        index: Path = typer.Argument(..., help="Field index (parquet) with donor and role columns."),
        config: Path = typer.Option(
            Path("configs/train/default.yaml"), "--config", help="Training config (LightningCLI YAML)."
        ),
        max_epochs: int | None = typer.Option(
            None, "--max-epochs", help="Epochs per fold (default: config)."
        ),
        out: Path = typer.Option(
            Path("lodo_out"), "--out", help="Output folder (tables, plots, fold splits)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the donor pairing."),
        baselines: str = typer.Option("logreg,rf", "--baselines", help="Classical baselines: logreg, rf."),
        permutations: int = typer.Option(1000, "--permutations", help="Shuffled-label permutations."),
        experiment: str = typer.Option("fibroclass-evaluate", "--experiment", help="MLflow experiment."),
        progress: bool = typer.Option(
            True, "--progress/--no-progress", help="Show a progress bar over folds."
        ),
    ) -> None:
        """Leave-one-pair-out CV: each fold holds out one healthy + one GoF donor, trains a fresh model on the
        others (one donor per class validates and calibrates), and predicts the held-out pair. Reports
        per-donor AUROC/accuracy/mean p, pooled AUROC, a shuffled-label null, ECE before/after calibration and
        classical baselines on organization features over the same folds. Extra arguments are LightningCLI
        overrides (e.g. --data.crop_size 48).

        Example: fibroclass evaluate lodo data/index.parquet --config configs/train/default.yaml --max-epochs 4 --out lodo_out
        """
        from fibroclass.workflows.lodo import run_lodo

        overrides = list(ctx.args)
        bad = [a for a in overrides if a.startswith("-") and not a.startswith("--")]
        if bad:
            raise FibroclassError(
                f"unknown option {bad[0]} (LightningCLI overrides look like --data.crop_size 48)"
            )
        names = [b.strip() for b in baselines.split(",") if b.strip()]
        result = run_lodo(
            index,
            config,
            overrides,
            out,
            max_epochs=max_epochs,
            seed=seed,
            baselines=names,
            n_permutations=permutations,
            experiment=experiment,
            progress=progress,
        )
        _print_comparison(result.summary.comparison, ["cnn", *names])
        _print_summary(result.summary, f"CNN ({len(result.folds)} folds)")
        for name, metrics in result.summary.extra["baselines"].items():
            console.print(f"baseline {name}: pooled AUROC {_fmt(metrics['auroc'])}")
        console.print(f"outputs: {result.out_dir}  MLflow run: {result.run_id} (experiment {experiment})")

    @ev.command("model")
    def model_cmd(
        model: str = typer.Option(..., "--model", help="MLflow model URI, e.g. models:/fibroclass@champion."),
        split: Path = typer.Option(..., "--split", help="Split folder (data/splits/NAME)."),
        subset: str = typer.Option(
            "test", "--subset", help="Donor subsets to evaluate: test, val, train (comma list)."
        ),
        index: Path | None = typer.Option(None, "--index", help="Field index (default: the split's)."),
        out: Path = typer.Option(Path("eval_out"), "--out", help="Output folder."),
        permutations: int = typer.Option(1000, "--permutations", help="Shuffled-label permutations."),
        experiment: str = typer.Option("fibroclass-evaluate", "--experiment", help="MLflow experiment."),
        trust_pickle: bool = typer.Option(
            False, "--trust-pickle", help="Allow a pickled model (trusted only)."
        ),
    ) -> None:
        """Evaluate a registered model on a split's donors: per-donor table, ROC, confusion, reliability/ECE.

        Example: fibroclass evaluate model --model models:/fibroclass@challenger --split data/splits/demo --out eval_out
        """
        from fibroclass.workflows.evaluate import evaluate_model

        subsets = [s.strip() for s in subset.split(",") if s.strip()]
        result = evaluate_model(model, split, subsets, index, out, permutations, experiment, trust_pickle)
        per = result.summary.per_donor
        table = Table(title=f"{model} on {split.name}: {'+'.join(subsets)} donors")
        for col in ("donor", "class", "fields", "accuracy", "mean p", "AUROC vs other class"):
            table.add_column(col, justify="left" if col in ("donor", "class") else "right")
        for row in per.to_dict("records"):
            table.add_row(
                str(row["donor"]),
                ("healthy", "GoF")[int(row["label"])],
                str(row["n"]),
                _fmt(row["accuracy"]),
                _fmt(row["mean_p"]),
                _fmt(row["auroc"]),
            )
        console.print(table)
        _print_summary(result.summary, "pooled")
        if "val" in subsets:
            console.print(
                "[yellow]note:[/] the temperature was fitted on the val donors; their ECE is optimistic"
            )
        console.print(f"outputs: {result.out_dir}  MLflow run: {result.run_id}")

    @ev.command("card")
    def card_cmd(
        model: str = typer.Option(
            ..., "--model", help="Registered model: models:/NAME/VERSION or models:/NAME@ALIAS."
        ),
        out: Path = typer.Option(Path("models"), "--out", help="Folder for <name>-v<version>.md."),
        lodo_dir: Path | None = typer.Option(
            None, "--lodo", help="Add a LODO comparison (an `evaluate lodo` --out)."
        ),
    ) -> None:
        """Write the model card of a registered version and log it to its training run.

        Example: fibroclass evaluate card --model models:/fibroclass/3 --out models --lodo lodo_out
        """
        from fibroclass.tracking.cards import parse_model_ref, write_card

        name, version = parse_model_ref(model)
        path = write_card(name, version, out, lodo_dir)
        console.print(f"wrote {path}")

    app.add_typer(ev, name="evaluate")
