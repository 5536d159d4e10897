"""Leave-one-pair-of-donors-out cross-validation: fold design and out-of-fold analysis (no torch).

Design (why pairs): a donor is either healthy or GoF, so a fold holding out a single donor has one
class and no AUROC, and the training data module needs both classes in its test split. Each fold
therefore holds out **one healthy and one GoF donor** (the test pair), takes one more donor of each
class for validation (early stopping/checkpointing and temperature calibration) and trains on the
rest. With ``n`` donors in the larger class there are ``n`` folds; every donor is held out at least
once (donors of a smaller class are reused, their fields' out-of-fold p averaged over folds).

Per-donor numbers, all from models that never saw the donor:

- ``accuracy`` (= balanced accuracy, one class per donor) and ``mean_p`` of the donor's fields;
- ``auroc``: AUROC of the donor's fields against **every out-of-fold field of the other class** (the
  probability that the model ranks a field of this donor on the right side of a field of another
  held-out donor of the opposite class);
- ``auroc_pair``: AUROC against its test-pair partner, within one fold model (the fold AUROC).

The pooled OOF AUROC, the shuffled-label (donor-permutation) null and ECE before/after calibration
come with it; `compare_lodo` puts the CNN and the classical baselines in one table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fibroclass import schema
from fibroclass.data.splits import CLASS, write_split
from fibroclass.errors import FibroclassError
from fibroclass.evaluation.baseline import make_model
from fibroclass.evaluation.metrics import (
    auroc,
    binary_metrics,
    expected_calibration_error,
    shuffled_label_baseline,
)

FOLD = "fold"
LOGIT = "logit"
P_RAW = "p_raw"  # sigmoid(logit), before temperature scaling
TEMPERATURE = "temperature"
POOLED = "(pooled)"
SCHEME = "leave-one-pair-out"
MIN_DONORS_PER_CLASS = 3  # held out + validation + >= 1 training donor


@dataclass(frozen=True)
class Fold:
    """One CV fold: donors held out for testing (one per class), for validation, and for training."""

    name: str
    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]

    def split_of(self, donor: str) -> str | None:
        for split in schema.SPLITS:
            if donor in getattr(self, split):
                return split
        return None


def donor_classes(index: pd.DataFrame, by: str = schema.DONOR) -> pd.Series:
    """Role (healthy/disease) of each donor of the control fields, indexed by donor id (sorted)."""
    for col in (schema.ROLE, by):
        if col not in index.columns:
            raise FibroclassError(f"field index has no '{col}' column")
    ctrl = index[index[schema.ROLE].isin(list(schema.ROLE_TO_LABEL))]
    if ctrl.empty:
        raise FibroclassError("field index has no control fields (role healthy/disease)")
    donors = ctrl[by].astype("string").str.strip()
    if donors.isna().any() or (donors == "").any():
        row = ctrl[donors.isna() | (donors == "")].iloc[0]
        raise FibroclassError(
            f"column '{by}' is empty for control well {row[schema.PLATE]} {row[schema.WELL]}"
        )
    roles = ctrl[schema.ROLE].groupby(donors.astype(str)).agg(lambda r: sorted(set(r)))
    mixed = roles[roles.map(len) > 1]
    if not mixed.empty:
        raise FibroclassError(f"{by} {mixed.index[0]!r} has control wells of several roles {mixed.iloc[0]}")
    return roles.map(lambda r: r[0]).sort_index()


def plan_pair_folds(index: pd.DataFrame, seed: int = 0, by: str = schema.DONOR) -> list[Fold]:
    """Folds holding out one healthy + one GoF donor each (see module docstring); deterministic in `seed`."""
    classes = donor_classes(index, by)
    rng = np.random.default_rng(seed)
    groups = {}
    for role in (schema.ROLE_HEALTHY, schema.ROLE_DISEASE):
        donors = sorted(classes.index[classes == role])
        if len(donors) < MIN_DONORS_PER_CLASS:
            raise FibroclassError(
                f"{SCHEME} cross-validation needs >= {MIN_DONORS_PER_CLASS} {role} donors (one held out, one "
                f"for validation, one or more to train); the index has {len(donors)}: {donors}"
            )
        groups[role] = [str(d) for d in rng.permutation(donors)]
    healthy, disease = groups[schema.ROLE_HEALTHY], groups[schema.ROLE_DISEASE]
    folds = []
    for i in range(max(len(healthy), len(disease))):
        test = (healthy[i % len(healthy)], disease[i % len(disease)])
        val = (healthy[(i + 1) % len(healthy)], disease[(i + 1) % len(disease)])
        train = tuple(sorted(d for d in (*healthy, *disease) if d not in test and d not in val))
        folds.append(Fold(name=f"{test[0]}+{test[1]}", test=test, val=val, train=train))
    return folds


def write_fold_split(
    index: pd.DataFrame, index_path: str | Path, fold: Fold, out_dir: str | Path, seed: int = 0
) -> Path:
    """Write the fold as a regular split manifest (train/val/test donors) that `FibroDataModule` reads."""
    classes = donor_classes(index)
    rows = [
        {schema.DONOR: d, CLASS: classes[d], schema.SPLIT: split}
        for split in schema.SPLITS
        for d in getattr(fold, split)
    ]
    params = {"by": schema.DONOR, "scheme": SCHEME, "fold": fold.name, "seed": seed, "stratify": schema.ROLE}
    return write_split(index, index_path, pd.DataFrame(rows), out_dir, params)


# -- out-of-fold predictions ------------------------------------------------------------------------
def _check_oof(oof: pd.DataFrame, p_col: str = schema.P_DISEASE) -> None:
    missing = [c for c in (schema.DONOR, schema.LABEL, p_col) if c not in oof.columns]
    if missing:
        raise FibroclassError(f"out-of-fold table lacks column(s) {missing}; has {list(oof.columns)}")
    if oof.empty:
        raise FibroclassError("out-of-fold table is empty")


def collapse_repeats(oof: pd.DataFrame, keys: Sequence[str] = schema.FIELD_KEYS) -> pd.DataFrame:
    """One row per field: probabilities/logits averaged over the folds that held the field out."""
    _check_oof(oof)
    if not set(keys) <= set(oof.columns) or not oof.duplicated(list(keys)).any():
        return oof.reset_index(drop=True)
    numeric = [c for c in (schema.P_DISEASE, P_RAW, LOGIT) if c in oof.columns]
    first = oof.groupby(list(keys), sort=False, as_index=False).first()
    means = oof.groupby(list(keys), sort=False, as_index=False)[numeric].mean()
    return first.drop(columns=numeric).merge(means, on=list(keys), how="left")[oof.columns]


def donor_metrics(oof: pd.DataFrame, p_col: str = schema.P_DISEASE, threshold: float = 0.5) -> pd.DataFrame:
    """Per donor: label, n, accuracy, balanced_accuracy, mean_p, auroc (vs all other-class fields), auroc_pair.

    `oof` has one row per (fold, field) or per field; repeats are averaged first for ``auroc``/
    ``accuracy``; ``auroc_pair`` (mean over the donor's folds) needs the ``fold`` column.
    """
    _check_oof(oof, p_col)
    table = collapse_repeats(oof)
    y = table[schema.LABEL].to_numpy(int)
    p = table[p_col].to_numpy(float)
    donors = table[schema.DONOR].astype(str).to_numpy()
    rows = []
    for donor in sorted(set(donors)):
        mine = donors == donor
        label = int(round(float(y[mine].mean())))
        other = ~mine & (y != label)
        vs = np.r_[y[mine], y[other]]
        ps = np.r_[p[mine], p[other]]
        m = binary_metrics(y[mine], p[mine], threshold)
        row = {
            schema.DONOR: donor,
            schema.LABEL: label,
            "n": m["n"],
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "mean_p": float(p[mine].mean()),
            "auroc": auroc(vs, ps) if other.any() else float("nan"),
            "auroc_pair": float("nan"),
            "folds": "",
        }
        if FOLD in oof.columns:
            sub = oof[oof[schema.DONOR].astype(str) == donor]
            folds = sorted(sub[FOLD].astype(str).unique())
            pair = [
                auroc(f[schema.LABEL], f[p_col])
                for _, f in oof[oof[FOLD].astype(str).isin(folds)].groupby(FOLD)
            ]
            row["auroc_pair"] = float(np.nanmean(pair)) if np.isfinite(pair).any() else float("nan")
            row["folds"] = ";".join(folds)
        rows.append(row)
    return pd.DataFrame(rows)


def fold_metrics(oof: pd.DataFrame, p_col: str = schema.P_DISEASE, threshold: float = 0.5) -> pd.DataFrame:
    """Per fold: held-out donors, n, auroc, balanced_accuracy, accuracy (and the fold's temperature)."""
    _check_oof(oof, p_col)
    if FOLD not in oof.columns:
        raise FibroclassError(f"out-of-fold table lacks column '{FOLD}'")
    rows = []
    for fold, sub in oof.groupby(FOLD, sort=False):
        m = binary_metrics(sub[schema.LABEL], sub[p_col], threshold)
        row = {FOLD: fold, "donors": ";".join(sorted(sub[schema.DONOR].astype(str).unique())), **m}
        if TEMPERATURE in sub.columns:
            row[TEMPERATURE] = float(sub[TEMPERATURE].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_metrics(
    oof: pd.DataFrame, p_col: str = schema.P_DISEASE, threshold: float = 0.5
) -> dict[str, float]:
    """Pooled OOF metrics (one row per field); with ``p_raw`` also ECE before/after calibration."""
    table = collapse_repeats(oof)
    out: dict[str, float] = dict(binary_metrics(table[schema.LABEL], table[p_col], threshold))
    out["ece"] = expected_calibration_error(table[schema.LABEL], table[p_col])
    if P_RAW in table.columns:
        out["ece_before"] = expected_calibration_error(table[schema.LABEL], table[P_RAW])
        out["ece_after"] = out["ece"]
    return out


def shuffled_baseline(
    oof: pd.DataFrame, p_col: str = schema.P_DISEASE, n: int = 1000, seed: int = 0
) -> dict[str, object]:
    """Permutation null of the pooled OOF AUROC: whole donors' labels shuffled (chance level ~0.5)."""
    table = collapse_repeats(oof)
    return shuffled_label_baseline(
        table[schema.LABEL], table[p_col], table[schema.DONOR].astype(str), n, seed
    )


def compare_lodo(
    oofs: Mapping[str, pd.DataFrame], p_col: str = schema.P_DISEASE, threshold: float = 0.5
) -> pd.DataFrame:
    """One row per donor plus a pooled row; per model ``{name}_auroc``, ``_accuracy``, ``_mean_p`` (and pooled
    ``_balanced_accuracy``). Per-donor AUROC is against all other-class out-of-fold fields (`donor_metrics`)."""
    if not oofs:
        raise FibroclassError("no out-of-fold tables to compare")
    cols = ["n", "auroc", "auroc_pair", "balanced_accuracy", "accuracy", "mean_p"]
    merged: pd.DataFrame | None = None
    for name, oof in oofs.items():
        per = donor_metrics(oof, p_col, threshold)
        pooled = pooled_metrics(oof, p_col, threshold)
        label = per[[schema.DONOR, schema.LABEL]]
        pooled_row = {schema.DONOR: POOLED, **{c: pooled.get(c, np.nan) for c in cols}}
        pooled_row["mean_p"] = float(collapse_repeats(oof)[p_col].mean())
        table = pd.concat([per[[schema.DONOR, *cols]], pd.DataFrame([pooled_row])], ignore_index=True)
        table = table.rename(columns={c: f"{name}_{c}" for c in cols})
        if merged is None:
            merged = label.merge(table, on=schema.DONOR, how="outer")
        else:
            merged = merged.merge(table, on=schema.DONOR, how="outer")
    assert merged is not None
    order = sorted(d for d in merged[schema.DONOR] if d != POOLED) + [POOLED]
    return merged.set_index(schema.DONOR).loc[order].reset_index()


def fold_baseline(
    features: pd.DataFrame,
    meta: pd.DataFrame,
    folds: Sequence[Fold],
    model: str = "logreg",
    seed: int = 0,
) -> pd.DataFrame:
    """Classical baseline on the CV's folds: fit on each fold's train + validation donors, predict its pair.

    `features` (numeric, one row per field; NaN median-imputed in the fit) aligns row by row with
    `meta` (field keys, donor, label). Returns an OOF table like the CNN's (``fold``, ``p_disease``).
    """
    if len(features) != len(meta):
        raise FibroclassError(f"features ({len(features)}) and field table ({len(meta)}) differ in length")
    x = features.to_numpy(float)
    y = meta[schema.LABEL].to_numpy(int)
    donors = meta[schema.DONOR].astype(str).to_numpy()
    parts = []
    for fold in folds:
        fit = np.isin(donors, fold.train + fold.val)
        test = np.isin(donors, fold.test)
        est = make_model(model, seed).fit(x[fit], y[fit])
        part = meta.loc[test].copy()
        part[FOLD] = fold.name
        part[schema.P_DISEASE] = est.predict_proba(x[test])[:, 1]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


# -- summary bundle ---------------------------------------------------------------------------------
@dataclass
class CVSummary:
    """Everything a LODO run reports: per-donor/per-fold tables, pooled metrics, null, comparison."""

    per_donor: pd.DataFrame
    per_fold: pd.DataFrame
    pooled: dict[str, float]
    shuffled: dict[str, object]
    comparison: pd.DataFrame | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def metrics(self, prefix: str = "cnn") -> dict[str, float]:
        """Flat MLflow metrics: pooled, shuffled null, and per donor (``{prefix}/donor/<id>/auroc`` ...)."""
        out = {f"{prefix}/{k}": float(v) for k, v in self.pooled.items() if _finite(v)}
        out["shuffled/auroc_null_mean"] = float(self.shuffled["auroc_null_mean"])
        out["shuffled/auroc_null_std"] = float(self.shuffled["auroc_null_std"])
        out["shuffled/p_value"] = float(self.shuffled["p_value"])
        for row in self.per_donor.itertuples(index=False):
            for key in ("auroc", "auroc_pair", "accuracy", "mean_p"):
                value = getattr(row, key)
                if _finite(value):
                    out[f"{prefix}/donor/{_metric_name(getattr(row, schema.DONOR))}/{key}"] = float(value)
        return out


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and bool(np.isfinite(value))


def _metric_name(text: object) -> str:
    """MLflow metric-safe version of a donor id (letters, digits, _ - . / and spaces only)."""
    return "".join(c if c.isalnum() or c in "_-. " else "_" for c in str(text))


def summarize(
    oof: pd.DataFrame, n_permutations: int = 1000, seed: int = 0, threshold: float = 0.5
) -> CVSummary:
    """Per-donor, per-fold and pooled metrics plus the donor-permutation null of one model's OOF table."""
    return CVSummary(
        per_donor=donor_metrics(oof, threshold=threshold),
        per_fold=fold_metrics(oof, threshold=threshold) if FOLD in oof.columns else pd.DataFrame(),
        pooled=pooled_metrics(oof, threshold=threshold),
        shuffled=shuffled_baseline(oof, n=n_permutations, seed=seed),
    )


def write_summary(summary: CVSummary, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """Write per_donor/per_fold/comparison CSVs, the null distribution and summary.json; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    def put(name: str, df: pd.DataFrame | None) -> None:
        if df is not None and not df.empty:
            paths[name] = out / f"{prefix}{name}.csv"
            df.to_csv(paths[name], index=False)

    put("per_donor", summary.per_donor)
    put("per_fold", summary.per_fold)
    put("comparison", summary.comparison)
    put("shuffled_null", pd.DataFrame({"auroc": np.asarray(summary.shuffled["auroc_null"], float)}))
    shuffled = {k: v for k, v in summary.shuffled.items() if k != "auroc_null"}
    doc = {"pooled": summary.pooled, "shuffled_label_baseline": shuffled, **summary.extra}
    paths["summary"] = out / f"{prefix}summary.json"
    paths["summary"].write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return paths


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Fold):
        return asdict(value)
    return str(value)
