"""Secondary per-well readouts (ELISA / AlphaLISA IL-6, wound closure %, ...) measured on the screen plates.

One or more CSV (or TSV) files, one row per well: `plate` (may be omitted when the screen has one plate),
`well` (`A1` or `A01`), then one numeric column per readout. A readout's unit goes in its header,
`il6 [pg/mL]` or `il6 (pg/mL)`, or follows from a name suffix (`_pg_ml`, `_ng_ml`, `_pct`, ...), or is
given in an optional YAML next to the CSV (same stem, `.yaml`/`.yml`):

    il6_pg_ml:
      label: IL-6            # shown in the report (default: the readout name)
      unit: pg/mL
      scale: log             # log10 before normalizing to the controls (concentrations); default linear

Empty cells, `NA` and `NaN` are missing measurements. Any other non-numeric cell, a malformed well, a
duplicated well or a readout given by two files for the same well is a `FibroclassError` naming the
file, the column and the row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fibroclass.errors import FibroclassError
from fibroclass.io.wells import canonical_well
from fibroclass.schema import PM_PLATE, PM_WELL

SOURCE = "assay_file"  # column of `AssayData.table`: the file each row came from
SCALES = ("linear", "log")
SPEC_KEYS = ("label", "unit", "scale")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HEADER_RE = re.compile(r"^(?P<name>[^\[\(]+?)\s*[\[\(](?P<unit>[^\]\)]*)[\]\)]\s*$")
_MISSING = {"", "na", "nan", "n/a", "none", "null"}
_SUFFIX_UNITS = (
    ("_pg_ml", "pg/mL"),
    ("_ng_ml", "ng/mL"),
    ("_ug_ml", "µg/mL"),
    ("_pm", "pM"),
    ("_nm", "nM"),
    ("_pct", "%"),
    ("_percent", "%"),
    ("_au", "a.u."),
    ("_rfu", "RFU"),
    ("_rlu", "RLU"),
)


@dataclass(frozen=True)
class AssaySpec:
    """One readout: its column name in the outputs, label, unit, scale and the file it came from."""

    name: str
    label: str
    unit: str = ""
    scale: str = "linear"  # "log": log10 before normalizing (values <= 0 become missing)
    source: str = ""

    @property
    def log(self) -> bool:
        return self.scale == "log"

    def title(self) -> str:
        """`IL-6 (pg/mL)`."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


@dataclass
class AssayData:
    """All readouts of all files: `table` has `plate` (may be ""), `well`, `assay_file` and one column
    per readout (float, NaN = not measured); `specs` in file/column order."""

    table: pd.DataFrame
    specs: dict[str, AssaySpec]
    files: list[Path] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.specs)


def files_fingerprint(paths: Sequence[str | Path]) -> list[str]:
    """sha256 of every readout file with its YAML, in order: changes when any content changes."""
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FibroclassError(f"assay file {p} does not exist")
        side = sidecar(p)
        blobs = [p.read_bytes()] + ([side.read_bytes()] if side is not None else [])
        out.append(hashlib.sha256(b"\0".join(blobs)).hexdigest())
    return out


def sidecar(path: Path) -> Path | None:
    """The optional YAML of a readout file (`il6.csv` -> `il6.yaml` or `il6.yml`)."""
    for suffix in (".yaml", ".yml"):
        cand = path.with_suffix(suffix)
        if cand.is_file():
            return cand
    return None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FibroclassError(f"assay file {path} does not exist")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FibroclassError(f"cannot read assay file {path}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda s: s.str.strip())


def _read_yaml(path: Path, columns: Sequence[str]) -> dict[str, dict]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError) as exc:
        raise FibroclassError(f"assay units file {path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise FibroclassError(
            f"assay units file {path}: expected a mapping readout -> {{label, unit, scale}}"
        )
    for name, spec in raw.items():
        if name not in columns:
            raise FibroclassError(f"assay units file {path}: readout '{name}' is not a column of {path.stem}")
        if not isinstance(spec, dict):
            raise FibroclassError(f"assay units file {path}: '{name}' must map to {{label, unit, scale}}")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise FibroclassError(
                f"assay units file {path}: '{name}' has unknown key(s) {unknown}; use {list(SPEC_KEYS)}"
            )
        if spec.get("scale", "linear") not in SCALES:
            raise FibroclassError(
                f"assay units file {path}: '{name}' scale must be linear or log, got {spec['scale']!r}"
            )
    return raw


def _suffix_unit(name: str) -> str:
    low = name.lower()
    return next((unit for suffix, unit in _SUFFIX_UNITS if low.endswith(suffix)), "")


def _spec_of(header: str, path: Path, extra: dict[str, dict]) -> AssaySpec:
    m = _HEADER_RE.match(header)
    name, unit = (m.group("name").strip(), m.group("unit").strip()) if m else (header, "")
    if not _NAME_RE.match(name):
        raise FibroclassError(
            f"assay file {path}: column '{header}': readout name '{name}' must start with a letter and hold "
            "only letters, digits and _ (units go in brackets: 'il6 [pg/mL]')"
        )
    spec = extra.get(header) or extra.get(name) or {}
    return AssaySpec(
        name=name,
        label=str(spec.get("label") or name),
        unit=str(spec.get("unit") or unit or _suffix_unit(name)),
        scale=str(spec.get("scale") or "linear"),
        source=str(path),
    )


def _numbers(values: pd.Series, path: Path, column: str) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, text in enumerate(values):
        if text.lower() in _MISSING:
            continue
        try:
            out[i] = float(text)
        except ValueError:
            raise FibroclassError(
                f"assay file {path} line {i + 2}, column '{column}': {text!r} is not a number "
                "(leave the cell empty for a missing value)"
            ) from None
        if not np.isfinite(out[i]):
            raise FibroclassError(
                f"assay file {path} line {i + 2}, column '{column}': {text!r} is not finite"
            )
    return out


def read_assay_file(path: str | Path) -> tuple[pd.DataFrame, list[AssaySpec]]:
    """One file's rows (`plate`, `well`, `assay_file`, readout columns) and its readout specs."""
    path = Path(path)
    df = _read_csv(path)
    lower = {c.lower(): c for c in df.columns}
    if PM_WELL not in lower:
        raise FibroclassError(f"assay file {path}: no '{PM_WELL}' column (columns: {list(df.columns)})")
    well_col, plate_col = lower[PM_WELL], lower.get(PM_PLATE)
    headers = [c for c in df.columns if c not in (well_col, plate_col)]
    if not headers:
        raise FibroclassError(f"assay file {path}: no readout column besides plate and well")
    side = sidecar(path)
    extra = _read_yaml(side, headers + [_spec_of(h, path, {}).name for h in headers]) if side else {}
    specs = [_spec_of(h, path, extra) for h in headers]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FibroclassError(f"assay file {path}: readout(s) {dup} given by more than one column")
    out = pd.DataFrame(
        {
            PM_PLATE: df[plate_col].astype(str) if plate_col else "",
            PM_WELL: [
                canonical_well(w, f"assay file {path} line {i + 2}") for i, w in enumerate(df[well_col])
            ],
            SOURCE: str(path),
        }
    )
    for header, spec in zip(headers, specs, strict=True):
        out[spec.name] = _numbers(df[header], path, header)
    keys = out[[PM_PLATE, PM_WELL]].astype(str).agg(" ".join, axis=1)
    repeated = keys[keys.duplicated()]
    if len(repeated):
        i = int(repeated.index[0])
        raise FibroclassError(
            f"assay file {path} line {i + 2}: well {repeated.iloc[0].strip()} appears twice"
        )
    return out, specs


def read_assays(paths: Sequence[str | Path]) -> AssayData:
    """Read and merge readout files; the same readout may come from several files (e.g. one per plate)
    but never twice for one well."""
    tables, specs, files = [], {}, []
    for p in paths:
        table, file_specs = read_assay_file(p)
        for s in file_specs:
            prev = specs.get(s.name)
            if prev is not None and (prev.unit, prev.scale) != (s.unit, s.scale):
                raise FibroclassError(
                    f"assay readout '{s.name}': {prev.source} says {prev.unit or 'no unit'} ({prev.scale}), "
                    f"{s.source} says {s.unit or 'no unit'} ({s.scale})"
                )
            specs.setdefault(s.name, s)
        tables.append(table)
        files.append(Path(p))
    if not tables:
        return AssayData(pd.DataFrame(columns=[PM_PLATE, PM_WELL, SOURCE]), {}, [])
    # One row per (plate, well): readouts of several files side by side; a cell given twice is an error.
    long = pd.concat(tables, ignore_index=True).melt(
        id_vars=[PM_PLATE, PM_WELL, SOURCE], var_name="readout", value_name="value"
    )
    long = long[np.isfinite(long["value"].to_numpy(float))]
    twice = long.duplicated([PM_PLATE, PM_WELL, "readout"], keep=False)
    if twice.any():
        row = long[twice].iloc[0]
        files_of = sorted(set(long[twice & (long["readout"] == row["readout"])][SOURCE]))
        raise FibroclassError(
            f"assay readout '{row['readout']}' for plate {row[PM_PLATE] or '(any)'} well {row[PM_WELL]} is "
            f"given by more than one file: {', '.join(files_of)}"
        )
    wide = long.pivot_table(index=[PM_PLATE, PM_WELL], columns="readout", values="value", aggfunc="first")
    sources = long.groupby([PM_PLATE, PM_WELL])[SOURCE].agg(lambda s: "; ".join(sorted(set(s))))
    wide = wide.reindex(columns=list(specs)).join(sources).reset_index()
    return AssayData(wide[[PM_PLATE, PM_WELL, SOURCE, *specs]], specs, files)


__all__ = [
    "SOURCE",
    "AssayData",
    "AssaySpec",
    "files_fingerprint",
    "read_assay_file",
    "read_assays",
    "sidecar",
]
