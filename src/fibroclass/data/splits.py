"""Train/val/test splits grouped by donor (numpy/pandas only), and their on-disk manifests.

Only control fields (role `healthy` or `disease`) take part: reference, treatment and empty wells are never
in a training split. Each donor (or other `by` group) goes to exactly one split; donors are split per class
(genotype, else role) so that every non-empty split holds at least one donor of each class.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.schema import (
    DONOR,
    FIELD_KEYS,
    GENOTYPE,
    PLATE,
    ROLE,
    ROLE_TO_LABEL,
    SITE,
    SPLIT,
    SPLITS,
    WELL,
)

CLASS = "class"
MANIFEST = "manifest.json"
ASSIGNMENTS = "assignments.csv"


def control_fields(index: pd.DataFrame) -> pd.DataFrame:
    """Rows of a field index whose role is a training class (healthy or disease)."""
    if ROLE not in index.columns:
        raise FibroclassError(f"field index has no '{ROLE}' column")
    return index[index[ROLE].isin(list(ROLE_TO_LABEL))]


def _class_labels(ctrl: pd.DataFrame, stratify: str | None) -> pd.Series:
    """Class of each control field: the `stratify` column when present and filled, else the role."""
    if stratify and stratify in ctrl.columns:
        values = ctrl[stratify].astype("string").str.strip()
        blank = values.isna() | (values == "")
        if not blank.all():
            if blank.any():
                row = ctrl[blank].iloc[0]
                raise FibroclassError(
                    f"column '{stratify}' is empty for control well {row[PLATE]} {row[WELL]}; fill it or drop it"
                )
            return values.astype(str)
    elif stratify and stratify not in (GENOTYPE, ROLE):
        raise FibroclassError(f"stratify column '{stratify}' is not in the field index")
    return ctrl[ROLE].astype(str)


def _donor_table(index: pd.DataFrame, by: str, stratify: str | None) -> pd.DataFrame:
    ctrl = control_fields(index)
    if ctrl.empty:
        raise FibroclassError("field index has no control wells (role healthy/disease) to split")
    if by not in ctrl.columns:
        raise FibroclassError(
            f"field index has no '{by}' column to group splits by (add it to the plate map)"
        )
    groups = ctrl[by].astype("string").str.strip()
    blank = groups.isna() | (groups == "")
    if blank.any():
        row = ctrl[blank].iloc[0]
        raise FibroclassError(f"column '{by}' is empty for control well {row[PLATE]} {row[WELL]}")
    fields = pd.DataFrame(
        {by: groups.astype(str), CLASS: _class_labels(ctrl, stratify), "well": ctrl[PLATE] + "/" + ctrl[WELL]}
    )
    mixed = fields.groupby(by)[CLASS].nunique()
    if (mixed > 1).any():
        donor = mixed[mixed > 1].index[0]
        classes = sorted(set(fields.loc[fields[by] == donor, CLASS]))
        raise FibroclassError(
            f"{by} {donor!r} has control wells of several classes {classes}; check the plate map"
        )
    table = fields.groupby(by).agg(
        **{CLASS: (CLASS, "first"), "n_wells": ("well", "nunique"), "n_fields": ("well", "size")}
    )
    return table.reset_index().sort_values(by, kind="stable").reset_index(drop=True)


def _counts(n: int, val_frac: float, test_frac: float) -> dict[str, int]:
    """Donors per split for a class of `n` donors: at least one in each split with a positive fraction."""
    n_val = max(1, round(n * val_frac)) if val_frac > 0 else 0
    n_test = max(1, round(n * test_frac)) if test_frac > 0 else 0
    while n - n_val - n_test < 1:
        if n_test >= n_val and n_test > 1:
            n_test -= 1
        elif n_val > 1:
            n_val -= 1
        else:
            break
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def make_split(
    index: pd.DataFrame,
    by: str = DONOR,
    val_frac: float = 0.2,
    test_frac: float = 0.2,
    seed: int = 0,
    stratify: str | None = GENOTYPE,
) -> pd.DataFrame:
    """Assign each donor (`by` group) of the control fields to one of train/val/test.

    Per class (column `stratify`, default genotype; the role when that column is absent or `stratify` is None
    or "role"), donors are shuffled with `seed` and `round(n * frac)` (at least 1) go to val and test, the rest
    to train. Needs at least one donor per class for each split with a positive fraction (3 with the defaults).
    Returns one row per donor: `by`, `class`, `split`, `n_wells`, `n_fields`, sorted by split then donor.
    """
    for name, frac in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0 <= frac < 1:
            raise FibroclassError(f"{name} must be in [0, 1), got {frac}")
    if val_frac + test_frac >= 1:
        raise FibroclassError(f"val_frac + test_frac must be < 1, got {val_frac + test_frac}")
    table = _donor_table(index, by, stratify)
    needed = 1 + (val_frac > 0) + (test_frac > 0)
    rng = np.random.default_rng(seed)
    table[SPLIT] = ""
    for cls in sorted(set(table[CLASS])):
        members = table.index[table[CLASS] == cls].to_numpy()
        if len(members) < needed:
            names = ", ".join(table.loc[members, by])
            raise FibroclassError(
                f"class {cls!r} has {len(members)} {by}(s) ({names}); need at least {needed} so that each of "
                f"train/val/test gets one (lower --val-frac/--test-frac to 0 to drop a split)"
            )
        members = rng.permutation(members)
        counts = _counts(len(members), val_frac, test_frac)
        start = 0
        for split in ("test", "val", "train"):
            table.loc[members[start : start + counts[split]], SPLIT] = split
            start += counts[split]
    order = table[SPLIT].map({s: i for i, s in enumerate(SPLITS)})
    return table.assign(_o=order).sort_values(["_o", by]).drop(columns="_o").reset_index(drop=True)


def index_hash(index: pd.DataFrame, by: str = DONOR) -> str:
    """SHA-256 of an index's field keys, path file names, role and `by` column, independent of row order.

    File names (not full paths) are hashed so a manifest stays valid when the images move or are mounted
    elsewhere; a changed set of fields, roles or donors changes the hash.
    """
    paths = sorted(c for c in index.columns if c.startswith("path_"))
    cols = [*FIELD_KEYS, ROLE, by, *paths]
    missing = [c for c in cols if c not in index.columns]
    if missing:
        raise FibroclassError(f"field index lacks column(s) {missing} needed for its hash")
    table = index[cols].astype("string").fillna("")
    for c in paths:
        table[c] = table[c].map(lambda p: PurePath(p.replace("\\", "/")).name)
    lines = sorted("\t".join(rec) for rec in table.itertuples(index=False, name=None))
    digest = hashlib.sha256("\t".join(cols).encode())
    digest.update("\n".join(lines).encode())
    return digest.hexdigest()


def _field_assignments(index: pd.DataFrame, donor_split: Mapping[str, str], by: str) -> pd.Series:
    groups = index[by].astype("string").str.strip() if by in index.columns else pd.Series(pd.NA, index.index)
    split = groups.map(donor_split).astype("object")
    split[~index[ROLE].isin(list(ROLE_TO_LABEL))] = None
    return split.where(split.notna(), None).rename(SPLIT)


@dataclass
class SplitManifest:
    """A split read from disk: donors per split, the index it was made from, and its parameters."""

    donors: dict[str, list[str]]
    index_path: str
    index_path_abs: str
    index_sha256: str
    params: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def by(self) -> str:
        return str(self.params.get("by", DONOR))

    def assign(self, index: pd.DataFrame, allow_changed_index: bool = False) -> pd.Series:
        """Split name of each row of `index` (None for non-control rows and donors not in the manifest).

        Raises FibroclassError when `index` differs from the one the split was made from, unless
        `allow_changed_index`.
        """
        digest = index_hash(index, self.by)
        if digest != self.index_sha256 and not allow_changed_index:
            raise FibroclassError(
                f"field index differs from the one split {self.source} was made from ({self.index_path}, sha256 "
                f"{self.index_sha256[:12]} vs {digest[:12]}); re-run `fibroclass split` or allow a changed index"
            )
        donor_split = {d: s for s, donors in self.donors.items() for d in donors}
        return _field_assignments(index, donor_split, self.by)


def write_split(
    index: pd.DataFrame,
    index_path: str | Path,
    assignment: pd.DataFrame,
    out_dir: str | Path,
    params: Mapping[str, Any],
) -> Path:
    """Write `manifest.json` and `assignments.csv` (control fields: keys, group, split) to `out_dir`.

    `assignment` is `make_split`'s result; `params` its arguments (recorded as given). Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    by = str(params.get("by", DONOR))
    donor_split = dict(zip(assignment[by].astype(str), assignment[SPLIT], strict=True))
    ctrl = control_fields(index).copy()
    ctrl[SPLIT] = _field_assignments(ctrl, donor_split, by)
    ctrl[CLASS] = (
        ctrl[by].astype("string").str.strip().map(dict(zip(assignment[by], assignment[CLASS], strict=True)))
    )
    counts = {
        s: {
            str(cls): {"wells": int(g[[PLATE, WELL]].drop_duplicates().shape[0]), "fields": len(g)}
            for cls, g in ctrl[ctrl[SPLIT] == s].groupby(CLASS, sort=True)
        }
        for s in SPLITS
    }
    manifest = {
        "params": dict(params),
        "index_path": str(index_path),
        "index_path_abs": str(Path(index_path).resolve()),
        "index_sha256": index_hash(index, by),
        "donors": {s: sorted(assignment.loc[assignment[SPLIT] == s, by].astype(str)) for s in SPLITS},
        "counts": counts,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    table = ctrl[ctrl[SPLIT].notna()][[PLATE, WELL, SITE, by, SPLIT]]
    table.to_csv(out_dir / ASSIGNMENTS, index=False)
    return out_dir


def read_split(path: str | Path) -> SplitManifest:
    """Read a split folder written by `write_split` (or its manifest.json)."""
    path = Path(path)
    manifest_path = path if path.suffix == ".json" else path / MANIFEST
    if not manifest_path.is_file():
        raise FibroclassError(
            f"split manifest {manifest_path} does not exist (make one with `fibroclass split`)"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        return SplitManifest(
            donors={s: [str(d) for d in data["donors"].get(s, [])] for s in SPLITS},
            index_path=data["index_path"],
            index_path_abs=data.get("index_path_abs", data["index_path"]),
            index_sha256=data["index_sha256"],
            params=data.get("params", {}),
            counts=data.get("counts", {}),
            source=str(manifest_path),
        )
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise FibroclassError(f"split manifest {manifest_path} is malformed: {exc!r}") from exc
