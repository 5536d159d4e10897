"""Plate layouts, donors and the per-well / per-field ground truth of simulated plates (no pixels).

Healthy donor HD{i} and GoF donor GoF{i} share their nuisance traits (density, cell size,
brightness), so donors differ from each other while the two classes keep identical nuisance
distributions; each donor also has its own baseline severity (healthy near 0, GoF near 1).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.simulate import compounds as cpd
from fibroclass.simulate.artefacts import ARTEFACTS
from fibroclass.simulate.render import FieldState
from fibroclass.simulate.seeding import rng_for

HEALTHY, GOF = "healthy", "GoF"
PLATE_SHAPES = {96: (8, 12), 384: (16, 24)}
ACTIN_MEAN = 2000.0  # counts per expected field of cells, before plate/well/donor/field factors
NUCLEI_MEAN = 500.0
WELL_SEVERITY_SD = 0.03
PLATEMAP_COLUMNS = (
    schema.PM_PLATE,
    schema.PM_WELL,
    schema.ROLE,
    schema.COMPOUND,
    schema.CONC,
    schema.DONOR,
    schema.GENOTYPE,
)
WELL_TRUTH_COLUMNS = (
    schema.PM_PLATE,
    schema.PM_WELL,
    "severity",
    "viability",
    schema.OFFTARGET,
    schema.ROLE,
    schema.COMPOUND,
    schema.CONC,
    schema.DONOR,
)
FIELD_TRUTH_COLUMNS = (schema.PM_PLATE, schema.PM_WELL, "site", "artefact", "n_cells", "vignetting")


@dataclass(frozen=True)
class ArtefactRates:
    """Probability that a field is out of focus, (nearly) empty, or carries debris (exclusive)."""

    blur: float = 0.04
    empty: float = 0.03
    debris: float = 0.03

    def __post_init__(self) -> None:
        rates = (self.blur, self.empty, self.debris)
        if min(rates) < 0 or sum(rates) > 1:
            raise FibroclassError(f"artefact rates {rates} must be >= 0 and sum to <= 1")

    def choose(self, rng: np.random.Generator) -> str:
        """Draw one field's artefact from ARTEFACTS."""
        u = rng.random()
        edges = np.cumsum([self.blur, self.empty, self.debris])
        return ARTEFACTS[1 + int(np.searchsorted(edges, u, side="right"))] if u < edges[-1] else "none"


TRAINING_ARTEFACTS = ArtefactRates(blur=0.02, empty=0.01, debris=0.01)
SCREEN_ARTEFACTS = ArtefactRates()


@dataclass(frozen=True)
class Donor:
    name: str
    genotype: str  # HEALTHY or GOF
    severity: float  # baseline (vehicle) severity
    density: float  # cells per field multiplier
    cell_scale: float  # linear cell size factor
    brightness: float  # stain intensity multiplier


def make_donor(seed: int, genotype: str, index: int, variation: float = 1.0) -> Donor:
    """Donor HD{index} or GoF{index}; nuisance traits are shared by the two donors of one index.

    `variation` scales how much donors differ: the SDs of their nuisance traits (log density, cell size,
    brightness) and the width of their baseline-severity ranges (healthy [0, 0.12·v], GoF [1 − 0.15·v, 1],
    clipped to [0, 0.45] and [0.55, 1]). 1 = the default donors; the same seed gives the same draws.
    """
    if genotype not in (HEALTHY, GOF):
        raise FibroclassError(f"genotype must be {HEALTHY!r} or {GOF!r}, got {genotype!r}")
    if not 0.0 <= variation <= 3.0:
        raise FibroclassError(f"donor variation must be in [0, 3], got {variation}")
    name = f"HD{index}" if genotype == HEALTHY else f"GoF{index}"
    nuisance = rng_for(seed, "donor-nuisance", index)
    density, cell_scale, brightness = np.exp(variation * nuisance.normal(0.0, [0.12, 0.06, 0.15]))
    u = rng_for(seed, "donor", name).uniform(0.0, 1.0)
    if genotype == HEALTHY:
        severity = u * min(0.12 * variation, 0.45)
    else:
        severity = 1.0 - (1.0 - u) * min(0.15 * variation, 0.45)
    return Donor(name, genotype, float(severity), float(density), float(cell_scale), float(brightness))


def well_name(row: int, col: int) -> str:
    """0-based row/column to `A01` style."""
    return f"{string.ascii_uppercase[row]}{col + 1:02d}"


def parse_well(well: str) -> tuple[int, int]:
    """`B03` -> (1, 2), 0-based row and column."""
    return string.ascii_uppercase.index(well[0]), int(well[1:]) - 1


@dataclass(frozen=True)
class WellSpec:
    """What a well holds on the plate map (before any randomness)."""

    well: str
    role: str
    compound: str = cpd.VEHICLE
    concentration_uM: float = 0.0
    genotype: str = GOF


def training_layout(
    seed: int, plate: str, donors: list[Donor], wells_per_donor: int
) -> list[tuple[str, Donor]]:
    """Vehicle wells of every donor at random positions of a 96-well plate (inner wells when they fit)."""
    n = len(donors) * wells_per_donor
    rows, cols = PLATE_SHAPES[96]
    inner = [well_name(r, c) for r in range(1, rows - 1) for c in range(1, cols - 1)]
    every = [well_name(r, c) for r in range(rows) for c in range(cols)]
    pool = inner if n <= len(inner) else every
    if n > len(pool):
        raise FibroclassError(
            f"{n} training wells per plate do not fit a 96-well plate; use fewer donors/wells"
        )
    chosen = rng_for(seed, plate, "layout").permutation(len(pool))[:n]
    order = [d for d in donors for _ in range(wells_per_donor)]
    return sorted(zip((pool[i] for i in chosen), order, strict=True), key=lambda wd: parse_well(wd[0]))


def _control_pattern(n_rows: int, flip: bool) -> list[str]:
    """One control column: alternating healthy/disease, the last quarter of rows reference."""
    n_ref = n_rows // 4
    pair = (schema.ROLE_DISEASE, schema.ROLE_HEALTHY) if flip else (schema.ROLE_HEALTHY, schema.ROLE_DISEASE)
    return [pair[r % 2] for r in range(n_rows - n_ref)] + [schema.ROLE_REFERENCE] * n_ref


def screen_layout(plate_format: int, doses: list[float]) -> list[WellSpec]:
    """Controls in the outer columns (1 and 12, or 1-2 and 23-24); each compound fills 8 rows x 2 columns.

    Row r of a compound block gets doses[r] (top dose first); the two columns are replicates.
    """
    if plate_format not in PLATE_SHAPES:
        raise FibroclassError(f"plate format must be 96 or 384, got {plate_format}")
    rows, cols = PLATE_SHAPES[plate_format]
    n_ctrl_cols = 1 if plate_format == 96 else 2
    ctrl_cols = [*range(n_ctrl_cols), *range(cols - n_ctrl_cols, cols)]
    specs: list[WellSpec] = []
    for k, c in enumerate(ctrl_cols):
        for r, role in enumerate(_control_pattern(rows, flip=k in (1, 2))):
            genotype = HEALTHY if role == schema.ROLE_HEALTHY else GOF
            compound = cpd.REFERENCE if role == schema.ROLE_REFERENCE else cpd.VEHICLE
            conc = cpd.REFERENCE_CONC_UM if role == schema.ROLE_REFERENCE else 0.0
            specs.append(WellSpec(well_name(r, c), role, compound, conc, genotype))
    library = cpd.library(plate_format)
    blocks_per_pair = rows // len(doses)
    treat_cols = list(range(n_ctrl_cols, cols - n_ctrl_cols))
    if len(library) > blocks_per_pair * len(treat_cols) // 2:
        raise FibroclassError(f"{len(library)} compounds do not fit a {plate_format}-well plate")
    for k, compound in enumerate(library):
        pair, block = divmod(k, blocks_per_pair)
        c0 = treat_cols[2 * pair]
        for r, dose in enumerate(doses):
            for c in (c0, c0 + 1):
                well = well_name(block * len(doses) + r, c)
                specs.append(WellSpec(well, schema.ROLE_TREATMENT, compound.name, dose, GOF))
    return sorted(specs, key=lambda s: parse_well(s.well))


def well_truth(
    spec: WellSpec, donor: Donor, rng: np.random.Generator, library: Mapping[str, cpd.Compound] | None = None
) -> dict[str, float]:
    """True severity / viability / off-target of one well (with well-to-well severity noise); compounds
    are looked up in `library` (name -> Compound) first, else in the built-in library."""
    if spec.compound == cpd.VEHICLE:
        sev, via, off = donor.severity, 1.0, 0.0
    else:
        c = library[spec.compound] if library and spec.compound in library else cpd.by_name(spec.compound)
        sev = c.severity(donor.severity, spec.concentration_uM)
        via, off = c.viability(spec.concentration_uM), c.offtarget(spec.concentration_uM)
    sev = float(np.clip(sev + rng.normal(0.0, WELL_SEVERITY_SD), 0.0, 1.0))
    return {
        "severity": round(sev, 5),
        "viability": round(float(via), 5),
        schema.OFFTARGET: round(float(off), 5),
    }


@dataclass(frozen=True)
class PlateOptics:
    actin: float  # plate brightness factors
    nuclei: float
    vignetting: float


def plate_optics(seed: int, plate: str, vignetting: float) -> PlateOptics:
    """Per-plate brightness of each stain and vignetting strength."""
    rng = rng_for(seed, plate, "plate")
    actin, nuclei = np.exp(rng.normal(0.0, 0.12, 2))
    return PlateOptics(float(actin), float(nuclei), float(vignetting * rng.uniform(0.8, 1.2)))


@dataclass(frozen=True)
class WellPlan:
    """A plate-map row plus its truth and the nuisance factors that rendering needs."""

    plate: str
    spec: WellSpec
    donor: Donor
    truth: dict[str, float]
    density: float
    actin: float
    nuclei: float

    def platemap_row(self) -> dict[str, object]:
        return {
            schema.PM_PLATE: self.plate,
            schema.PM_WELL: self.spec.well,
            schema.ROLE: self.spec.role,
            schema.COMPOUND: self.spec.compound,
            schema.CONC: self.spec.concentration_uM,
            schema.DONOR: self.donor.name,
            schema.GENOTYPE: self.donor.genotype,
        }

    def truth_row(self) -> dict[str, object]:
        row = self.platemap_row()
        row.update(self.truth)
        return {k: row[k] for k in WELL_TRUTH_COLUMNS}


def plan_well(
    seed: int,
    plate: str,
    spec: WellSpec,
    donor: Donor,
    optics: PlateOptics,
    library: Mapping[str, cpd.Compound] | None = None,
) -> WellPlan:
    """Draw one well's truth and nuisance factors from its own stream (seed, plate, well)."""
    rng = rng_for(seed, plate, spec.well)
    truth = well_truth(spec, donor, rng, library)
    density, b_actin, b_nuclei = np.exp(rng.normal(0.0, [0.08, 0.07, 0.07]))
    return WellPlan(
        plate=plate,
        spec=spec,
        donor=donor,
        truth=truth,
        density=float(density * donor.density),
        actin=float(ACTIN_MEAN * optics.actin * b_actin * donor.brightness),
        nuclei=float(NUCLEI_MEAN * optics.nuclei * b_nuclei * donor.brightness),
    )


def field_state(plan: WellPlan, optics: PlateOptics, artefact: str, rng: np.random.Generator) -> FieldState:
    """The render state of one field of a well (small per-field brightness and vignetting jitter)."""
    f_actin, f_nuclei = np.exp(rng.normal(0.0, 0.04, 2))
    vig = float(np.clip(optics.vignetting * (1.0 + rng.normal(0.0, 0.05)), 0.0, 0.95))
    return FieldState(
        severity=plan.truth["severity"],
        viability=plan.truth["viability"],
        offtarget=plan.truth[schema.OFFTARGET],
        density=plan.density,
        cell_scale=plan.donor.cell_scale,
        actin_mean=plan.actin * float(f_actin),
        nuclei_mean=plan.nuclei * float(f_nuclei),
        artefact=artefact,
        vignetting=vig,
    )


def platemap_frame(plans: list[WellPlan]) -> pd.DataFrame:
    """The plate-map CSV contract (DESIGN.md), one row per well."""
    return pd.DataFrame([p.platemap_row() for p in plans], columns=list(PLATEMAP_COLUMNS))


def well_truth_frame(plans: list[WellPlan]) -> pd.DataFrame:
    return pd.DataFrame([p.truth_row() for p in plans], columns=list(WELL_TRUTH_COLUMNS))


def compounds_frame(plate_format: int, rescue_emax: float | None = None) -> pd.DataFrame:
    return pd.DataFrame([c.as_row() for c in cpd.library(plate_format, rescue_emax)])


def in_tested_range(ec50: float, doses: list[float], margin: int = 2) -> bool:
    """True when at least `margin` tested doses lie on each side of `ec50`."""
    if not math.isfinite(ec50):
        return False
    below = sum(d < ec50 for d in doses)
    above = sum(d > ec50 for d in doses)
    return below >= margin and above >= margin
