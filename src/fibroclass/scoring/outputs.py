"""Writing one scoring run's folder; every file is written atomically (temp file + `os.replace`).

Files (DESIGN.md contract, plus embeddings and provenance):
- `fields.parquet`: one row per field: keys, plate-map columns, channel paths, `p_disease`, `disease_score`,
  `nuclei_count`, `qc_pass`, `qc_reason`.
- `embeddings.npy`: (n_fields, D) float32 mean tile embeddings, row i ↔ row i of `fields.parquet`
  (NaN rows for fields that could not be scored).
- `well_embeddings.npy`: (n_wells, D) float32 mean of used field embeddings, row i ↔ row i of `wells.csv`.
- `wells.csv`: keys, plate-map columns, `n_fields`, `n_fields_used`, `disease_score`, `rescue_pct`,
  `viability_pct`, `offtarget`, `flags` (extra columns such as `nuclei_count` before the results).
- `compounds.csv`: `compounds.COMPOUND_COLUMNS` (+ phenotypic activity `activity_*`).
- `activity.csv`: per compound × dose, copairs mAP vs the vehicle wells (`scoring.compounds.activity`).
- `plate_qc.json`: `{"z_prime_min": float, "plates": {plate: {...}}}`; non-finite numbers are `null`.
- `run.json`: model, inputs, config and package version of the run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fibroclass.schema import (
    DISEASE_SCORE,
    FLAGS,
    N_FIELDS,
    N_FIELDS_USED,
    NUCLEI_COUNT,
    OFFTARGET,
    P_DISEASE,
    QC_PASS,
    QC_REASON,
    RESCUE_PCT,
    VIABILITY_PCT,
)

FIELD_RESULT_COLUMNS = (P_DISEASE, DISEASE_SCORE, NUCLEI_COUNT, QC_PASS, QC_REASON)
WELL_RESULT_COLUMNS = (N_FIELDS, N_FIELDS_USED, DISEASE_SCORE, RESCUE_PCT, VIABILITY_PCT, OFFTARGET, FLAGS)
FILES = (
    "fields.parquet",
    "embeddings.npy",
    "well_embeddings.npy",
    "wells.csv",
    "compounds.csv",
    "activity.csv",
    "plate_qc.json",
    "run.json",
)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file next to `path`, then move it into place (no half-written files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _ordered(df: pd.DataFrame, last: tuple[str, ...]) -> pd.DataFrame:
    """Keys first, then carried columns, then `last` in contract order (created as NaN when absent)."""
    df = df.copy()
    for col in last:
        if col not in df:
            df[col] = np.nan
    keys = [c for c in df.columns if c.startswith("Metadata_")]
    rest = [c for c in df.columns if c not in keys and c not in last]
    return df[keys + rest + list(last)]


def field_table(fields: pd.DataFrame) -> pd.DataFrame:
    """`fields.parquet` layout."""
    return _ordered(fields, FIELD_RESULT_COLUMNS)


def well_table(wells: pd.DataFrame) -> pd.DataFrame:
    """`wells.csv` layout (extra columns such as `nuclei_count` sit before the result columns)."""
    df = _ordered(wells, WELL_RESULT_COLUMNS)
    df[FLAGS] = df[FLAGS].fillna("").astype(str)
    return df


def json_safe(obj: Any) -> Any:
    """Recursively turn NaN/inf into None and numpy scalars into Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_text(text: str) -> Callable[[Path], None]:
    return lambda tmp: tmp.write_text(text)


def _write_npy(arr: np.ndarray | Path) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        if isinstance(arr, Path):  # an .npy already written next to the outputs (streamed by plate)
            os.replace(arr, tmp)
            return
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(arr, dtype=np.float32))

    return write


def write_outputs(
    out_dir: str | Path,
    fields: pd.DataFrame,
    field_embeddings: np.ndarray | Path,
    wells: pd.DataFrame,
    well_embeddings: np.ndarray,
    compounds: pd.DataFrame,
    plate_qc: dict[str, dict],
    z_prime_min: float,
    run_info: dict[str, Any] | None = None,
    activity: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write every output file of a scoring run into `out_dir`; returns {file name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ft, wt = field_table(fields), well_table(wells)
    qc = {"z_prime_min": z_prime_min, "plates": plate_qc}
    writers: dict[str, Callable[[Path], None]] = {
        "fields.parquet": lambda tmp: ft.to_parquet(tmp, index=False),
        "embeddings.npy": _write_npy(field_embeddings),
        "well_embeddings.npy": _write_npy(well_embeddings),
        "wells.csv": lambda tmp: wt.to_csv(tmp, index=False),
        "compounds.csv": lambda tmp: compounds.to_csv(tmp, index=False),
        "activity.csv": lambda tmp: (activity if activity is not None else pd.DataFrame()).to_csv(tmp, index=False),
        "plate_qc.json": _write_text(json.dumps(json_safe(qc), indent=2, allow_nan=False)),
        "run.json": _write_text(
            json.dumps(json_safe(run_info or {}), indent=2, allow_nan=False, default=str)
        ),
    }
    return {name: atomic_write(out / name, write) for name, write in writers.items()}


@dataclass
class ScoreResult:
    """Everything one scoring run produced (the same content as the files in `out_dir`)."""

    out_dir: Path
    fields: pd.DataFrame
    field_embeddings: np.ndarray  # read-only memory map of embeddings.npy
    wells: pd.DataFrame
    well_embeddings: np.ndarray
    compounds: pd.DataFrame
    plate_qc: dict[str, dict]
    reference_doses: pd.DataFrame  # rescue by dose of the reference compound(s); empty when absent
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chunks_scored: int = 0  # chunks scored by this call
    chunks_reused: int = 0  # chunks found done in parts/ (resumed or earlier runs)
    merged: bool = True  # False when the outputs were already up to date (nothing rewritten)
    report_problems: list[str] = field(default_factory=list)  # report parts that failed, with the error type
