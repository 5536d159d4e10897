"""Whole simulated plate sets on disk: images, plate map and ground-truth tables.

Layout of `out`: `images/<plate>/<files>` (named by the chosen writer), `platemap.csv`,
`ground_truth_wells.csv`, `ground_truth_fields.csv` and, for screens, `ground_truth_compounds.csv` and the
secondary readouts `assays.csv` + `assays.yaml` (IL-6, wound closure; simulate.assays).
Every field is rendered from its own stream (seed, plate, well, site), so pixels do not depend on
the naming, the number of workers or the order of rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.simulate import compounds as cpd
from fibroclass.simulate import plates as pl
from fibroclass.simulate.assays import write_assays
from fibroclass.simulate.render import MIN_SIZE, RenderedField, render_field
from fibroclass.simulate.seeding import rng_for
from fibroclass.simulate.writers import get_writer

Progress = Callable[[int, int], None]  # (fields done, fields total)


@dataclass(frozen=True)
class SimulatedPlates:
    """Where a simulation wrote its outputs."""

    out: Path
    images_dir: Path
    platemap: Path
    ground_truth_wells: Path
    ground_truth_fields: Path
    ground_truth_compounds: Path | None
    plates: tuple[str, ...]
    naming: str
    n_fields: int
    assays: Path | None = None  # screens: per-well IL-6 and wound closure (simulate.assays)


@dataclass(frozen=True)
class _FieldJob:
    seed: int
    size: int
    site: int
    plan: pl.WellPlan
    optics: pl.PlateOptics
    artefacts: pl.ArtefactRates


def render_job(job: _FieldJob) -> tuple[RenderedField, str, float]:
    """Render one field of a planned well; returns the field, its artefact and vignetting strength."""
    rng = rng_for(job.seed, job.plan.plate, job.plan.spec.well, job.site)
    artefact = job.artefacts.choose(rng)
    state = pl.field_state(job.plan, job.optics, artefact, rng)
    return render_field(state, job.size, rng), artefact, state.vignetting


def _check(seed: int, size: int, fields: int, n_plates: int, vignetting: float) -> None:
    if seed < 0:
        raise FibroclassError(f"seed must be >= 0, got {seed}")
    if size < MIN_SIZE:
        raise FibroclassError(f"size must be >= {MIN_SIZE} px, got {size}")
    if fields < 1 or n_plates < 1:
        raise FibroclassError(f"fields and plates must be >= 1, got fields={fields}, plates={n_plates}")
    if not 0.0 <= vignetting < 1.0:
        raise FibroclassError(f"vignetting must be in [0, 1), got {vignetting}")


def _rendered(jobs: list[_FieldJob], workers: int) -> Iterator[tuple[RenderedField, str, float]]:
    if workers <= 1:
        yield from map(render_job, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(render_job, jobs, chunksize=4)


def _write_all(
    out: Path,
    naming: str,
    plans: list[pl.WellPlan],
    optics: dict[str, pl.PlateOptics],
    seed: int,
    size: int,
    fields: int,
    artefacts: pl.ArtefactRates,
    workers: int,
    progress: Progress | None,
) -> tuple[Path, Path, Path, Path]:
    writer = get_writer(naming)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        _FieldJob(seed, size, site, plan, optics[plan.plate], artefacts)
        for plan in plans
        for site in range(1, fields + 1)
    ]
    rows = []
    for done, (job, (field, artefact, vig)) in enumerate(zip(jobs, _rendered(jobs, workers), strict=True), 1):
        writer.write(images_dir, job.plan.plate, job.plan.spec.well, job.site, (field.actin, field.nuclei))
        rows.append([job.plan.plate, job.plan.spec.well, job.site, artefact, field.n_cells, round(vig, 4)])
        if progress is not None:
            progress(done, len(jobs))
    finish = getattr(writer, "finish", None)  # layouts with an index file (Harmony, HTD, LoadData, OME-Zarr)
    if finish is not None:
        finish(images_dir)
    paths = (out / "platemap.csv", out / "ground_truth_wells.csv", out / "ground_truth_fields.csv")
    pl.platemap_frame(plans).to_csv(paths[0], index=False)
    pl.well_truth_frame(plans).to_csv(paths[1], index=False)
    pd.DataFrame(rows, columns=list(pl.FIELD_TRUTH_COLUMNS)).to_csv(paths[2], index=False)
    return images_dir, *paths


def simulate_training_set(
    out: str | Path,
    seed: int = 0,
    size: int = 256,
    fields: int = 4,
    naming: str = "imagexpress",
    n_plates: int = 2,
    donors_per_class: int = 4,
    wells_per_donor: int = 3,
    artefacts: pl.ArtefactRates = pl.TRAINING_ARTEFACTS,
    vignetting: float = 0.15,
    workers: int = 1,
    progress: Progress | None = None,
    donor_variation: float = 1.0,
) -> SimulatedPlates:
    """Vehicle (DMSO) control wells of donors HD1..HDn (role healthy) and GoF1..GoFn (role disease).

    Every donor has `wells_per_donor` wells on every plate (plates TRAIN01, TRAIN02, ...), at random
    inner-well positions; `fields` sites per well of `size` x `size` px. `donor_variation` scales how
    much donors differ (plates.make_donor).
    """
    _check(seed, size, fields, n_plates, vignetting)
    if donors_per_class < 1 or wells_per_donor < 1:
        raise FibroclassError("donors_per_class and wells_per_donor must be >= 1")
    get_writer(naming)
    out = Path(out)
    donors = [
        pl.make_donor(seed, g, i, donor_variation)
        for g in (pl.HEALTHY, pl.GOF)
        for i in range(1, donors_per_class + 1)
    ]
    plates = tuple(f"TRAIN{p:02d}" for p in range(1, n_plates + 1))
    optics = {p: pl.plate_optics(seed, p, vignetting) for p in plates}
    plans = []
    for plate in plates:
        for well, donor in pl.training_layout(seed, plate, donors, wells_per_donor):
            role = schema.ROLE_HEALTHY if donor.genotype == pl.HEALTHY else schema.ROLE_DISEASE
            spec = pl.WellSpec(well, role, cpd.VEHICLE, 0.0, donor.genotype)
            plans.append(pl.plan_well(seed, plate, spec, donor, optics[plate]))
    images_dir, platemap, gt_wells, gt_fields = _write_all(
        out, naming, plans, optics, seed, size, fields, artefacts, workers, progress
    )
    return SimulatedPlates(
        out, images_dir, platemap, gt_wells, gt_fields, None, plates, naming, len(plans) * fields
    )


def simulate_screen(
    out: str | Path,
    seed: int = 0,
    size: int = 256,
    fields: int = 4,
    plate_format: int = 96,
    naming: str = "imagexpress",
    n_plates: int = 1,
    artefacts: pl.ArtefactRates = pl.SCREEN_ARTEFACTS,
    vignetting: float = 0.15,
    donor_index: int = 1,
    workers: int = 1,
    progress: Progress | None = None,
    donor_variation: float = 1.0,
    rescue_emax: float | None = None,
) -> SimulatedPlates:
    """Drug-screen plates SCREEN01, ...: controls in the outer columns, 8-point 3-fold dose series.

    Controls: `healthy` (HD{donor_index}, DMSO), `disease` (GoF{donor_index}, DMSO), `reference`
    (GoF + ruxolitinib 1 µM). Treatments: GoF cells, compounds of `compounds.library(plate_format)`
    from 10 µM down, 2 replicate wells per dose. True pharmacology in `ground_truth_compounds.csv`.
    `donor_variation` scales how much donors differ (plates.make_donor); `rescue_emax` makes every
    rescue compound a partial rescuer with that maximal effect (e.g. 0.6; the reference wells too).
    """
    _check(seed, size, fields, n_plates, vignetting)
    if plate_format not in pl.PLATE_SHAPES:
        raise FibroclassError(f"plate format must be 96 or 384, got {plate_format}")
    if donor_index < 1:
        raise FibroclassError(f"donor_index must be >= 1, got {donor_index}")
    get_writer(naming)
    out = Path(out)
    healthy = pl.make_donor(seed, pl.HEALTHY, donor_index, donor_variation)
    gof = pl.make_donor(seed, pl.GOF, donor_index, donor_variation)
    library = {c.name: c for c in cpd.library(plate_format, rescue_emax)}
    layout = pl.screen_layout(plate_format, cpd.dilution_series())
    plates = tuple(f"SCREEN{p:02d}" for p in range(1, n_plates + 1))
    optics = {p: pl.plate_optics(seed, p, vignetting) for p in plates}
    plans = [
        pl.plan_well(
            seed, plate, spec, healthy if spec.genotype == pl.HEALTHY else gof, optics[plate], library
        )
        for plate in plates
        for spec in layout
    ]
    images_dir, platemap, gt_wells, gt_fields = _write_all(
        out, naming, plans, optics, seed, size, fields, artefacts, workers, progress
    )
    gt_compounds = out / "ground_truth_compounds.csv"
    pl.compounds_frame(plate_format, rescue_emax).to_csv(gt_compounds, index=False)
    assays = write_assays(out, plans, seed)
    return SimulatedPlates(
        out, images_dir, platemap, gt_wells, gt_fields, gt_compounds, plates, naming, len(plans) * fields,
        assays,
    )  # fmt: skip
