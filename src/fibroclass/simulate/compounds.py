"""Simulated compounds: ground-truth Hill curves for rescue, toxicity and off-target morphology."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fibroclass.errors import FibroclassError

VEHICLE = "DMSO"
REFERENCE = "ruxolitinib"
REFERENCE_CONC_UM = 1.0

RESCUE = "rescue"
INERT = "inert"
TOXIC = "toxic"
OFF_TARGET = "off_target"
KINDS = (RESCUE, INERT, TOXIC, OFF_TARGET)


def hill(conc_uM: float | np.ndarray, ec50_uM: float, hill_slope: float) -> float | np.ndarray:
    """Fractional response c^h / (c^h + EC50^h) in [0, 1]; 0 at c = 0 and when EC50 is NaN."""
    c = np.asarray(conc_uM, dtype=float)
    if not math.isfinite(ec50_uM):
        out = np.zeros_like(c)
    else:
        ratio = np.power(np.maximum(c, 0.0) / ec50_uM, hill_slope)
        out = ratio / (1.0 + ratio)
    return float(out) if out.ndim == 0 else out


def dilution_series(top_uM: float = 10.0, n: int = 8, factor: float = 3.0) -> list[float]:
    """Concentrations from the top dose down by `factor`, `n` points (e.g. 10, 3.33, ... µM)."""
    return [top_uM / factor**i for i in range(n)]


@dataclass(frozen=True)
class Compound:
    """True pharmacology of one compound.

    `emax` is the fraction of disease severity removed at saturating dose (1 = back to healthy);
    viability falls as 1 - hill(tox); off-target morphology rises as hill(offtarget).
    Absent effects have NaN EC50s.
    """

    name: str
    kind: str
    ec50_uM: float = math.nan
    emax: float = 0.0
    hill: float = 1.0
    tox_ec50_uM: float = math.nan
    tox_hill: float = 2.0
    offtarget_ec50_uM: float = math.nan
    offtarget_hill: float = 1.5

    def severity(self, disease_severity: float, conc_uM: float) -> float:
        """Severity of GoF cells of baseline `disease_severity` treated at `conc_uM`."""
        return disease_severity * (1.0 - self.emax * hill(conc_uM, self.ec50_uM, self.hill))

    def viability(self, conc_uM: float) -> float:
        """Fraction of cells remaining (1 = no toxicity)."""
        return 1.0 - hill(conc_uM, self.tox_ec50_uM, self.tox_hill)

    def offtarget(self, conc_uM: float) -> float:
        """Off-target morphology strength in [0, 1]."""
        return hill(conc_uM, self.offtarget_ec50_uM, self.offtarget_hill)

    def as_row(self) -> dict[str, object]:
        """Row of `ground_truth_compounds.csv`."""
        return {
            "compound": self.name,
            "kind": self.kind,
            "ec50_uM": self.ec50_uM,
            "emax": self.emax,
            "hill": self.hill,
            "tox_ec50_uM": self.tox_ec50_uM,
            "offtarget_ec50_uM": self.offtarget_ec50_uM,
        }


def _rescue(name: str, ec50: float, emax: float = 1.0, h: float = 1.2, tox: float = math.nan) -> Compound:
    return Compound(name, RESCUE, ec50_uM=ec50, emax=emax, hill=h, tox_ec50_uM=tox)


def _inert(name: str) -> Compound:
    return Compound(name, INERT)


def _toxic(name: str, tox_ec50: float, tox_hill: float = 2.0) -> Compound:
    return Compound(name, TOXIC, tox_ec50_uM=tox_ec50, tox_hill=tox_hill)


def _offtarget(name: str, ec50: float, h: float = 1.5) -> Compound:
    return Compound(name, OFF_TARGET, offtarget_ec50_uM=ec50, offtarget_hill=h)


# Primary EC50s (rescue, toxicity of `toxic`, off-target of `off_target`) lie inside the default
# 8-point 3-fold series from 10 µM with >= 2 doses on each side; secondary toxicities of rescue
# compounds sit far above it (mild at the top dose).
LIBRARY_96: tuple[Compound, ...] = (
    _rescue("ruxolitinib", 0.15, h=1.2),
    _rescue("tofacitinib", 0.80, emax=0.9, h=1.0, tox=40.0),
    _inert("mannitol"),
    _toxic("staurosporine", 0.5, tox_hill=2.0),
    _offtarget("cytochalasinD", 0.6, h=1.5),
)

LIBRARY_384: tuple[Compound, ...] = (
    *LIBRARY_96,
    _rescue("baricitinib", 0.30, h=1.1),
    _rescue("upadacitinib", 0.06, h=1.3),
    _rescue("filgotinib", 1.5, emax=0.8, h=1.0),
    _rescue("momelotinib", 0.45, emax=0.7, h=1.1, tox=25.0),
    _rescue("fedratinib", 0.9, emax=0.6, h=1.4, tox=30.0),
    _rescue("abrocitinib", 0.35, emax=0.95, h=1.0),
    _rescue("deucravacitinib", 0.08, emax=0.5, h=1.0),
    _rescue("peficitinib", 0.25, emax=0.85, h=0.9),
    _inert("sucrose"),
    _inert("ibuprofen"),
    _inert("paracetamol"),
    _toxic("doxorubicin", 0.3, tox_hill=1.5),
    _toxic("digitonin", 2.0, tox_hill=3.0),
    _offtarget("latrunculinB", 0.2, h=1.5),
    _offtarget("nocodazole", 0.1, h=1.2),
)


def library(plate_format: int, rescue_emax: float | None = None) -> tuple[Compound, ...]:
    """Compound library of the screen layout for a 96- or 384-well plate; `rescue_emax` (0..1] gives every
    rescue compound that maximal effect instead (partial rescuers, e.g. 0.6)."""
    lib = {96: LIBRARY_96, 384: LIBRARY_384}[plate_format]
    if rescue_emax is None:
        return lib
    if not 0.0 < rescue_emax <= 1.0:
        raise FibroclassError(f"rescue_emax must be in (0, 1], got {rescue_emax}")
    return tuple(replace(c, emax=float(rescue_emax)) if c.kind == RESCUE else c for c in lib)


def by_name(name: str) -> Compound:
    """Look up a compound of the 384 library by name (the 96 library is a subset)."""
    for c in LIBRARY_384:
        if c.name == name:
            return c
    raise KeyError(name)
