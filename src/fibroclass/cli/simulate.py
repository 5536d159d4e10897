"""`fibroclass simulate train|screen`: write synthetic plates (TIFFs, plate map, ground truth)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from fibroclass.errors import FibroclassError
from fibroclass.progress import progress_bar, show_progress
from fibroclass.simulate import (
    SCREEN_ARTEFACTS,
    TRAINING_ARTEFACTS,
    ArtefactRates,
    SimulatedPlates,
    simulate_screen,
    simulate_training_set,
)

NAMING_HELP = (
    "Export layout: imagexpress ({plate}_{well}_s{site}_w{ch}.tif), operetta (rXXcYYfZZp01-chN...), harmony "
    "(+Index.idx.xml), harmony-zstack, imagexpress_htd (TimePoint/ZStep + .HTD), multipage, ometiff, loaddata "
    "(+load_data.csv) or omezarr; suffix -12bit, -8bit or -vignette for other bit depths / strong vignetting."
)


ARTEFACTS_HELP = "Artefact field rates BLUR,EMPTY,DEBRIS (default {})."


def parse_rates(text: str | None, default: ArtefactRates) -> ArtefactRates:
    """`"0.04,0.03,0.03"` -> ArtefactRates(blur=0.04, empty=0.03, debris=0.03); None -> default."""
    if text is None:
        return default
    try:
        blur, empty, debris = (float(v) for v in text.split(","))
    except ValueError:
        raise FibroclassError(
            f"--artefacts {text!r} must be three rates BLUR,EMPTY,DEBRIS, e.g. 0.04,0.03,0.03"
        ) from None
    return ArtefactRates(blur=blur, empty=empty, debris=debris)


def _rates_text(r: ArtefactRates) -> str:
    return f"{r.blur:g},{r.empty:g},{r.debris:g}"


@contextmanager
def _progress_bar(show: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr, fed by the simulator's (done, total) callback."""
    if not show:
        yield None
        return
    with progress_bar(True, "writing fields", transient=False) as bar:
        task = bar.add_task("fields", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _report(result: SimulatedPlates) -> None:
    typer.echo(
        f"wrote {result.n_fields} fields of {len(result.plates)} plate(s) ({', '.join(result.plates)}) "
        f"named {result.naming} -> {result.images_dir}"
    )
    typer.echo(f"plate map:    {result.platemap}")
    truth = [result.ground_truth_wells, result.ground_truth_fields, result.ground_truth_compounds]
    typer.echo("ground truth: " + ", ".join(str(p) for p in truth if p is not None))
    if result.assays is not None:
        typer.echo(f"assays:       {result.assays} (IL-6, wound closure; fibroclass score --assay)")


def register(app: typer.Typer) -> None:
    sim = typer.Typer(
        help="Render synthetic healthy / STAT4 GoF fibroblast plates with a plate map and ground truth.",
        no_args_is_help=True,
    )

    @sim.command("train")
    def train(
        out: Path = typer.Option(..., "--out", help="Output folder (images/, platemap.csv, ground truth)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same pixels."),
        size: int = typer.Option(256, "--size", help="Field size in pixels (square)."),
        fields: int = typer.Option(4, "--fields", help="Fields (sites) per well."),
        naming: str = typer.Option("imagexpress", "--naming", help=NAMING_HELP),
        plates: int = typer.Option(2, "--plates", help="Number of plates (every donor on every plate)."),
        donors: int = typer.Option(4, "--donors", help="Donors per class (HD1.., GoF1..)."),
        wells_per_donor: int = typer.Option(
            3, "--wells-per-donor", help="Vehicle wells per donor and plate."
        ),
        artefacts: str | None = typer.Option(
            None, "--artefacts", help=ARTEFACTS_HELP.format(_rates_text(TRAINING_ARTEFACTS))
        ),
        vignetting: float = typer.Option(
            0.15, "--vignetting", help="Illumination fall-off at the corners (0-1)."
        ),
        workers: int = typer.Option(1, "--workers", help="Rendering processes."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Training set: DMSO control wells of healthy (HD*) and GoF donors on several plates.

        Example: fibroclass simulate train --out sim/train --size 256 --fields 4
        """
        with _progress_bar(show_progress(progress)) as update:
            result = simulate_training_set(
                out,
                seed=seed,
                size=size,
                fields=fields,
                naming=naming,
                n_plates=plates,
                donors_per_class=donors,
                wells_per_donor=wells_per_donor,
                artefacts=parse_rates(artefacts, TRAINING_ARTEFACTS),
                vignetting=vignetting,
                workers=workers,
                progress=update,
            )
        _report(result)

    @sim.command("screen")
    def screen(
        out: Path = typer.Option(..., "--out", help="Output folder (images/, platemap.csv, ground truth)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same pixels."),
        size: int = typer.Option(256, "--size", help="Field size in pixels (square)."),
        fields: int = typer.Option(4, "--fields", help="Fields (sites) per well."),
        plate_format: int = typer.Option(96, "--format", help="Plate format: 96 or 384 wells."),
        naming: str = typer.Option("imagexpress", "--naming", help=NAMING_HELP),
        plates: int = typer.Option(1, "--plates", help="Number of screen plates (same layout)."),
        artefacts: str | None = typer.Option(
            None, "--artefacts", help=ARTEFACTS_HELP.format(_rates_text(SCREEN_ARTEFACTS))
        ),
        vignetting: float = typer.Option(
            0.15, "--vignetting", help="Illumination fall-off at the corners (0-1)."
        ),
        workers: int = typer.Option(1, "--workers", help="Rendering processes."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Drug-screen plates: controls in the outer columns, 8-point 3-fold dose series of compounds.

        Example: fibroclass simulate screen --out sim/screen --format 384 --naming operetta
        """
        with _progress_bar(show_progress(progress)) as update:
            result = simulate_screen(
                out,
                seed=seed,
                size=size,
                fields=fields,
                plate_format=plate_format,
                naming=naming,
                n_plates=plates,
                artefacts=parse_rates(artefacts, SCREEN_ARTEFACTS),
                vignetting=vignetting,
                workers=workers,
                progress=update,
            )
        _report(result)

    app.add_typer(sim, name="simulate")
