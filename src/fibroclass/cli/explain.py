"""`fibroclass explain`: Grad-CAM overlays of chosen fields, written as PNGs and logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        model: str = typer.Option(
            ..., "--model", help="MLflow model URI, e.g. models:/fibroclass@challenger."
        ),
        index: Path = typer.Option(..., "--index", help="Field index (parquet) holding the fields."),
        field: list[str] | None = typer.Option(
            None, "--field", help="PLATE:WELL:SITE, or PLATE:WELL for all its sites (repeatable)."
        ),
        pick: int = typer.Option(
            0, "--pick", help="Also pick N representative fields per control role (spread over p)."
        ),
        out: Path = typer.Option(Path("explain_out"), "--out", help="Output folder for the PNGs."),
        target: str = typer.Option(
            "predicted", "--target", help="Explain the predicted class, or always 'disease' / 'healthy'."
        ),
        experiment: str = typer.Option("fibroclass-explain", "--experiment", help="MLflow experiment."),
        mlflow_log: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the PNGs to an MLflow run."),
        trust_pickle: bool = typer.Option(
            False, "--trust-pickle", help="Allow a pickled model (trusted only)."
        ),
    ) -> None:
        """Grad-CAM: where in a field the model finds the evidence for its call (actin/nuclei composite,
        heatmap at field resolution, overlay on actin), one PNG per field plus fields.csv.

        Example: fibroclass explain --model models:/fibroclass@challenger --index data/index.parquet --field TRAIN01:C04:1 --pick 2 --out explain_out
        """
        from fibroclass.workflows.explain import explain

        result = explain(
            model,
            index,
            field or [],
            pick,
            out,
            target,
            experiment if mlflow_log else None,
            trust_pickle,
        )
        for row in result.fields.to_dict("records"):
            console.print(
                f"{row['png']}: {row.get('role', '')} {row.get('donor', '')} p(disease) {row['p_disease']:.3f}, "
                f"map shows evidence for '{row['target']}'"
            )
        where = f"; MLflow run {result.run_id}" if result.run_id else ""
        console.print(f"wrote {len(result.fields)} explanations to {result.out_dir}{where}")
