"""`fibroclass report`: a screen summary over several score runs (thin wrapper over scoring.report.screen)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        runs: list[Path] = typer.Argument(
            ..., metavar="RUN_DIR...", help="Output folders of `fibroclass score`."
        ),
        out: Path = typer.Option(
            Path("screen.html"), "--out", help="The screen page; its tables go next to it."
        ),
        label: list[str] | None = typer.Option(
            None, "--label", help="A name per run, in RUN_DIR order (default: the folder names)."
        ),
        title: str = typer.Option("fibroclass screen summary", "--title", help="Page title."),
    ) -> None:
        """Summarize a screen of several score runs (plates, days, batches) in one interactive page.

        Writes OUT (screen.html: compounds with the call of every run and an overall call from the pooled
        wells, replicate-plate concordance of rescue per compound × dose with Spearman ρ and Bland-Altman,
        Z′ and domain-shift flags per plate over time, links to each run's report.html) and, next to it,
        screen_compounds.csv, screen_concordance.csv (one row per pair of plates),
        screen_concordance_points.csv and screen_plates.csv.

        Example: fibroclass report scores/day1 scores/day2 --out screen/screen.html
        """
        from fibroclass.errors import FibroclassError
        from fibroclass.scoring.report.screen import summarize, write_tables
        from fibroclass.scoring.report.screenpage import write_screen_page

        if label and len(label) != len(runs):
            raise FibroclassError(f"--label given {len(label)} time(s) for {len(runs)} run folder(s)")
        if out.suffix.lower() not in (".html", ".htm"):
            raise FibroclassError(f"--out {out} must be an .html file (the tables are written next to it)")
        screen = summarize(runs, label or None)
        tables = write_tables(screen, out.parent)
        page = write_screen_page(screen, out, title)
        calls = screen.compounds["overall_call"].value_counts().to_dict() if len(screen.compounds) else {}
        console.print(
            f"{len(screen.runs)} run(s), {len(screen.plates)} plate(s), {len(screen.compounds)} compounds; "
            f"overall calls: {', '.join(f'{k} {v}' for k, v in calls.items()) or 'none'}"
        )
        for row in screen.pairs.to_dict("records"):
            console.print(
                f"  {row['unit_a']} vs {row['unit_b']}: {row['n_points']} compound × dose, Spearman ρ "
                f"{row['spearman_rho']:.3f}, bias {row['bias_pct']:+.1f}% (LoA {row['loa_low_pct']:.1f} to "
                f"{row['loa_high_pct']:.1f})",
                markup=False,
            )
        console.print(f"screen page: {page}")
        console.print("tables:      " + ", ".join(str(p) for p in tables.values()))
