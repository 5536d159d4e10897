"""A screen over several `fibroclass score` runs (plates, days, batches): one compound table with the
calls of every run and an overall call, replicate-plate concordance, and plate QC over time.

The overall call pools the wells of every run (plates renamed `run/plate`, rescue already normalized to
each plate's own controls) and applies the calls of the first run's config to them, as if all plates had
been scored together: plates that failed QC do not count, a compound seen only on failed plates is not
called. Tables: `screen_compounds.csv`, `screen_concordance.csv`, `screen_plates.csv`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.assays import AssaySpec
from fibroclass.schema import COMPOUND, FLAGS, PLATE
from fibroclass.scoring.compounds.assays import DISCORDANT, assay_compound_readout
from fibroclass.scoring.compounds.calls import compound_readout
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.report.concordance import concordance, dose_means
from fibroclass.scoring.wells.assays import rescue_col

RUN_FILES = ("wells.csv", "compounds.csv", "plate_qc.json")
PER_RUN = ("call", "ec50_uM", "max_rescue_pct", DISCORDANT)
POOLED = (
    "call",
    "call_reason",
    "ec50_uM",
    "ec50_qualifier",
    "ec50_ci_low_uM",
    "ec50_ci_high_uM",
    "emax_pct",
    "max_rescue_pct",
    "min_viability_pct",
)


@dataclass
class Run:
    """One score run folder, read back."""

    label: str
    path: Path
    wells: pd.DataFrame
    compounds: pd.DataFrame
    plates: dict[str, dict]
    z_prime_min: float
    info: dict
    config: ScoreConfig

    @property
    def created(self) -> str:
        return str(self.info.get("created", ""))

    @property
    def report(self) -> Path | None:
        p = self.path / "report.html"
        return p if p.is_file() else None


@dataclass
class Screen:
    """What `summarize` found: the runs and the tables of the screen."""

    runs: list[Run]
    compounds: pd.DataFrame
    plates: pd.DataFrame
    pairs: pd.DataFrame
    points: pd.DataFrame
    readouts: dict[str, AssaySpec] = field(default_factory=dict)


def load_run(path: str | Path, label: str) -> Run:
    """Read a run folder written by `fibroclass score`; a folder that is not one names what it lacks."""
    path = Path(path)
    if not path.is_dir():
        raise FibroclassError(f"run folder {path} does not exist")
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise FibroclassError(f"{path} is not a fibroclass score run: it lacks {', '.join(missing)}")
    try:
        qc = json.loads((path / "plate_qc.json").read_text())
        info = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
        wells = pd.read_csv(path / "wells.csv")
        compounds = pd.read_csv(path / "compounds.csv")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise FibroclassError(f"run folder {path}: cannot read its outputs ({exc})") from exc
    wells[FLAGS] = wells[FLAGS].fillna("").astype(str) if FLAGS in wells else ""
    try:
        cfg = ScoreConfig(**info["config"]) if "config" in info else ScoreConfig()
    except (TypeError, FibroclassError) as exc:
        raise FibroclassError(
            f"run folder {path}: run.json holds a config this version cannot read ({exc})"
        ) from exc
    return Run(
        label,
        path,
        wells,
        compounds,
        dict(qc.get("plates", {})),
        float(qc.get("z_prime_min", math.nan)),
        info,
        cfg,
    )


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique labels: the folder names, with parents added where they repeat."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i + 1}:{p.name}" for i, p in enumerate(map(Path, paths))]


def safe_label(label: str) -> str:
    """A CSV-column-friendly form of a run label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def _readouts(runs: Sequence[Run]) -> dict[str, AssaySpec]:
    """Secondary readouts present in every run (labels and units from plate_qc.json)."""
    common = None
    specs: dict[str, AssaySpec] = {}
    for run in runs:
        names = set()
        for q in run.plates.values():
            for name, a in (q.get("assays") or {}).items():
                if rescue_col(name) in run.wells:
                    names.add(name)
                    unit, scale = str(a.get("unit", "")), str(a.get("scale", "linear"))
                    specs.setdefault(name, AssaySpec(name, str(a.get("label") or name), unit, scale))
        common = names if common is None else common & names
    return {n: s for n, s in specs.items() if n in (common or set())}


def _pooled(runs: Sequence[Run]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Wells of every run with plates renamed `run/plate`, and the renamed plate QC."""
    wells, qc = [], {}
    for run in runs:
        w = run.wells.copy()
        w[PLATE] = run.label + "/" + w[PLATE].astype(str)
        wells.append(w)
        qc.update({f"{run.label}/{p}": q for p, q in run.plates.items()})
    return pd.concat(wells, ignore_index=True), qc


def screen_compounds(runs: Sequence[Run], readouts: dict[str, AssaySpec]) -> pd.DataFrame:
    """One row per compound: per-run call / EC50 / max rescue (/ discordant), then the pooled call."""
    cfg = runs[0].config
    pooled, qc = _pooled(runs)
    overall, _ = compound_readout(pooled, qc, cfg.compounds, cfg.readout)
    if readouts:
        overall, _ = assay_compound_readout(pooled, overall, qc, cfg.compounds, cfg.readout, readouts)
    names = sorted(
        set().union(*(set(r.compounds[COMPOUND].astype(str)) for r in runs))
        | set(overall[COMPOUND].astype(str))
    )
    table = pd.DataFrame({COMPOUND: names})
    calls = []
    for run in runs:
        per = run.compounds.assign(**{COMPOUND: run.compounds[COMPOUND].astype(str)}).set_index(COMPOUND)
        for col in PER_RUN:
            if col in per:
                table[f"{col}_{safe_label(run.label)}"] = table[COMPOUND].map(per[col])
        calls.append(
            table[COMPOUND].map(per["call"]) if "call" in per else pd.Series(np.nan, index=table.index)
        )
    per_run = pd.concat(calls, axis=1)
    table.insert(1, "n_runs", per_run.notna().sum(axis=1).astype(int))
    table.insert(2, "n_hit_runs", (per_run == "hit").sum(axis=1).astype(int))
    table.insert(3, "calls_agree", per_run.apply(lambda r: r.dropna().nunique() <= 1, axis=1))
    ov = overall.assign(**{COMPOUND: overall[COMPOUND].astype(str)}).set_index(COMPOUND)
    extra = [f"{n}{s}" for n in readouts for s in ("_max_rescue_pct", "_rho", "_discordant")]
    for col in (*POOLED, *extra):
        if col in ov:
            table[col if col not in ("call", "call_reason") else f"overall_{col}"] = table[COMPOUND].map(
                ov[col]
            )
    return table


def plate_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run × plate, in run order (creation time): Z′, SSMD, verdict, domain shift, reasons."""
    rows = []
    for run in sorted(runs, key=lambda r: r.created):
        for plate, q in sorted(run.plates.items()):
            ds = q.get("domain_shift") if isinstance(q.get("domain_shift"), dict) else {}
            rows.append({
                "run": run.label, "plate": plate, "unit": f"{run.label}/{plate}", "created": run.created,
                "z_prime": q.get("z_prime"), "ssmd": q.get("ssmd"), "pass": bool(q.get("pass")),
                "z_prime_min": run.z_prime_min, "n_fields": q.get("n_fields"),
                "n_fields_flagged": q.get("n_fields_flagged"), "domain_shift_score": ds.get("score"),
                "domain_shift_threshold": ds.get("threshold"), "out_of_distribution": ds.get("out_of_distribution"),
                "reasons": "; ".join(map(str, q.get("reasons") or [])),
            })  # fmt: skip
    return pd.DataFrame(rows)


def summarize(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> Screen:
    """Read the runs and build every table of the screen."""
    if not paths:
        raise FibroclassError("fibroclass report needs at least one score run folder")
    paths = [Path(p) for p in paths]
    labels = list(labels) if labels else run_labels(paths)
    runs = [load_run(p, lab) for p, lab in zip(paths, labels, strict=True)]
    readouts = _readouts(runs)
    doses = pd.concat([dose_means(r.wells, r.label, r.config.compounds) for r in runs], ignore_index=True)
    plates = plate_table(runs)
    passed = dict(zip(plates["unit"], plates["pass"], strict=True)) if len(plates) else {}
    pairs, points = concordance(doses, passed)
    return Screen(runs, screen_compounds(runs, readouts), plates, pairs, points, readouts)


def write_tables(screen: Screen, folder: Path) -> dict[str, Path]:
    """screen_compounds.csv, screen_concordance.csv (pairs), screen_concordance_points.csv, screen_plates.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "screen_compounds.csv": screen.compounds,
        "screen_concordance.csv": screen.pairs,
        "screen_concordance_points.csv": screen.points,
        "screen_plates.csv": screen.plates,
    }
    out = {}
    for name, df in tables.items():
        df.to_csv(folder / name, index=False)
        out[name] = folder / name
    return out


__all__ = [
    "Run",
    "Screen",
    "load_run",
    "plate_table",
    "run_labels",
    "screen_compounds",
    "summarize",
    "write_tables",
]
