"""`fibroclass split`: assign donors to train/val/test and write the split manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from fibroclass.data.splits import make_split, write_split
from fibroclass.io.index import read_index
from fibroclass.schema import DONOR, GENOTYPE, SPLIT, SPLITS


def register(app: typer.Typer) -> None:
    @app.command("split")
    def split(
        index: Path = typer.Argument(..., help="Field index (parquet) from `fibroclass index`."),
        out: Path = typer.Option(
            ..., "--out", help="Split folder to write (manifest.json, assignments.csv)."
        ),
        by: str = typer.Option(
            DONOR, "--by", help="Index column grouping fields; each group is in one split."
        ),
        val_frac: float = typer.Option(
            0.2, "--val-frac", help="Fraction of donors per class for validation."
        ),
        test_frac: float = typer.Option(0.2, "--test-frac", help="Fraction of donors per class for test."),
        seed: int = typer.Option(0, "--seed", help="Random seed of the donor shuffle."),
        stratify: str = typer.Option(
            GENOTYPE,
            "--stratify",
            help="Class column (falls back to the role when absent); 'role' to use roles.",
        ),
    ) -> None:
        """Split the control wells of a field index by donor into train/val/test.

        Example: fibroclass split data/index.parquet --by donor --out data/splits/v1 --val-frac 0.2 --seed 0
        """
        df = read_index(index)
        params = {"by": by, "val_frac": val_frac, "test_frac": test_frac, "seed": seed, "stratify": stratify}
        assignment = make_split(
            df, by=by, val_frac=val_frac, test_frac=test_frac, seed=seed, stratify=stratify
        )
        write_split(df, index, assignment, out, params)
        for name in SPLITS:
            part = assignment[assignment[SPLIT] == name]
            donors = ", ".join(f"{d} ({c})" for d, c in zip(part[by], part["class"], strict=True)) or "-"
            typer.echo(f"{name:<5} {len(part):>3} {by}(s): {donors}")
        typer.echo(f"wrote {out}")
