"""Model cards: what a registered classifier was trained on, how it did, what it is (not) for (no torch/MLflow).

`CardFacts` is filled from the MLflow run by `fibroclass.tracking.cards`; `render_model_card` turns it
into Markdown (`models/<name>-v<version>.md`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fibroclass import schema

INTENDED_USE = (
    "Scoring the actin/nuclei disorganization of STAT4 gain-of-function (GoF) patient fibroblasts relative "
    "to healthy-donor fibroblasts in 2-channel (actin + nuclei) fluorescence fields, as a per-field "
    "disease probability that `fibroclass score` aggregates per well and normalizes to each plate's "
    "healthy and GoF vehicle controls (rescue %). Use it to rank compounds in a screen run with the same "
    "cell lines, staining, magnification and acquisition settings as the training plates, with the "
    "plate's own controls as the reference."
)

GENERAL_LIMITS = (
    "Few donors: metrics per donor are the honest unit; field-level numbers overstate certainty because "
    "fields of one donor are not independent. Check the leave-one-pair-out CV (`fibroclass evaluate lodo`).",
    "Donors never seen in training (a new patient or family) may look different for reasons unrelated to "
    "STAT4 (age, passage, culture): validate on the new donor's controls before trusting rescue calls.",
    "It detects a loss of actin alignment and GoF-like cell shape. It does not detect other phenotypes, "
    "cytotoxicity (use viability and nuclei counts), off-target morphology, or mechanism of a rescue.",
    "Probabilities are calibrated by one temperature fitted on the validation donors; calibration on new "
    "plates or donors is not guaranteed (see ECE on the test donors).",
    "Changing the magnification, pixel size, staining, channel order or bit depth changes the inputs; "
    "re-train or re-validate instead of scoring such plates directly.",
)


@dataclass
class CardFacts:
    """What a model card states; every field comes from the training run or its split manifest."""

    name: str
    version: str
    run_id: str
    model_uri: str
    created: str = ""
    aliases: list[str] = field(default_factory=list)
    tracking_uri: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)  # backbone, channels, crop size, ...
    training: dict[str, Any] = field(default_factory=dict)  # lr, epochs, batch size, augmentation ...
    split_name: str = ""
    index_path: str = ""
    index_sha256: str = ""
    donors: dict[str, list[str]] = field(default_factory=dict)  # split -> donors
    donor_classes: dict[str, str] = field(default_factory=dict)  # donor -> role
    split_counts: dict[str, Any] = field(default_factory=dict)  # split -> class -> wells/fields
    plates: list[str] = field(default_factory=list)
    simulated: bool | None = None  # None: unknown
    test_metrics: dict[str, float] = field(default_factory=dict)
    per_donor: pd.DataFrame | None = None  # test donors: donor, label, n, accuracy, mean_p, auroc
    temperature: float = 1.0
    calibration: dict[str, float] = field(default_factory=dict)  # val/ece_before ... test/ece_after
    lodo: pd.DataFrame | None = None  # optional `fibroclass evaluate lodo` comparison table
    lodo_source: str = ""
    extra_limits: list[str] = field(default_factory=list)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _table(df: pd.DataFrame, digits: int = 3) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def _kv(items: dict[str, Any]) -> str:
    return "\n".join(f"- **{k}**: {_fmt(v)}" for k, v in items.items())


def _role_name(label: Any) -> str:
    try:
        return schema.LABEL_NAMES[int(label)]
    except (TypeError, ValueError, IndexError):
        return str(label)


def _lodo_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Donor, class and each model's AUROC / accuracy / mean p (the comparison table without the rest)."""
    keep = [c for c in table.columns if c.endswith(("_auroc", "_accuracy", "_mean_p"))]
    keep = [c for c in keep if not c.endswith("_balanced_accuracy")]
    out = table[[schema.DONOR, *keep]].copy()
    if schema.LABEL in table.columns:
        classes = table[schema.LABEL].map(lambda v: "" if pd.isna(v) else _role_name(v))
        out.insert(1, "class", classes)
    return out


def render_model_card(f: CardFacts) -> str:
    """Markdown model card of one registered version."""
    out = [f"# Model card: {f.name} v{f.version}", ""]
    aliases = ", ".join(f"@{a}" for a in f.aliases) or "none"
    out += [
        _kv(
            {
                "registered model": f"models:/{f.name}/{f.version} (aliases: {aliases})",
                "logged model": f.model_uri,
                "MLflow run": f"{f.run_id} ({f.tracking_uri})" if f.tracking_uri else f.run_id,
                "created": f.created,
            }
        ),
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Model",
        "",
        _kv(f.architecture),
        "",
        "Training settings:",
        "",
        _kv(f.training) if f.training else "- n/a",
        "",
        "## Training data",
        "",
    ]
    source = {
        True: "simulated plates (`fibroclass simulate`)",
        False: "images not made by `fibroclass simulate`",
        None: "not recorded (index not found)",
    }
    out += [
        _kv(
            {
                "data": source[f.simulated],
                "split": f.split_name,
                "field index": f.index_path,
                "index sha256": f.index_sha256,
                "plates": ", ".join(f.plates) or "n/a",
            }
        ),
        "",
        "| split | donors | wells (healthy / disease) | fields (healthy / disease) |",
        "|---|---|---|---|",
    ]
    for split in schema.SPLITS:
        donors = f.donors.get(split, [])
        labelled = ", ".join(f"{d} ({f.donor_classes.get(d, '?')})" for d in donors) or "-"
        counts = f.split_counts.get(split, {})

        def pair(kind: str, counts: dict = counts) -> str:
            h = counts.get(schema.ROLE_HEALTHY, counts.get("healthy", {})).get(kind, 0)
            d = counts.get(schema.ROLE_DISEASE, counts.get("GoF", {})).get(kind, 0)
            return f"{h} / {d}"

        out.append(f"| {split} | {labelled} | {pair('wells')} | {pair('fields')} |")
    out += ["", "Test donors were never used for training, checkpoint selection or calibration.", ""]
    out += ["## Performance on the held-out test donors", ""]
    if f.test_metrics:
        out += [_kv(f.test_metrics), ""]
    if f.per_donor is not None and not f.per_donor.empty:
        per = f.per_donor.copy()
        if schema.LABEL in per.columns:
            per[schema.LABEL] = per[schema.LABEL].map(_role_name)
            per = per.rename(columns={schema.LABEL: "class"})
        out += [
            "Per donor (calibrated p; a donor has one class, so its AUROC is against the other class's test fields):",
            "",
            _table(per),
            "",
        ]
    out += ["## Calibration", ""]
    out += [
        f"Temperature scaling fitted on the validation donors' field logits: **T = {f.temperature:.3f}** "
        "(p = sigmoid(logit / T); scoring applies it).",
        "",
    ]
    if f.calibration:
        out += ["| set | ECE before | ECE after |", "|---|---|---|"]
        for name in ("val", "test"):
            before, after = f.calibration.get(f"{name}/ece_before"), f.calibration.get(f"{name}/ece_after")
            if before is not None:
                out.append(f"| {name} | {_fmt(before)} | {_fmt(after)} |")
        out.append("")
    if f.lodo is not None and not f.lodo.empty:
        out += [
            "## Leave-one-pair-out cross-validation (same configuration and index)",
            "",
            f"From `{f.lodo_source}`. Each donor is predicted by models that never saw it: the CNN vs "
            "classical baselines on organization features, on the same folds. AUROC per donor is against "
            "all held-out fields of the other class; the last row pools all held-out fields.",
            "",
            _table(_lodo_columns(f.lodo)),
            "",
        ]
    out += ["## Limits", ""]
    limits = list(GENERAL_LIMITS)
    if f.simulated:
        limits.insert(
            0,
            "Trained and tested on SIMULATED plates: the numbers show the pipeline works, not that the model "
            "recognizes real STAT4 GoF fibroblasts. Do not use it on real plates.",
        )
    n_donors = sum(len(v) for v in f.donors.values())
    if n_donors:
        limits.insert(
            0, f"Trained on {len(f.donors.get('train', []))} donors ({n_donors} in the whole split)."
        )
    limits += f.extra_limits
    out += [f"- {text}" for text in limits]
    return "\n".join(out).rstrip() + "\n"


def card_path(out_dir: str | Path, name: str, version: str) -> Path:
    """`<out_dir>/<name>-v<version>.md`."""
    return Path(out_dir) / f"{name}-v{version}.md"


def write_model_card(facts: CardFacts, out_dir: str | Path) -> Path:
    """Render and write the card; returns its path (parent folders created)."""
    path = card_path(out_dir, facts.name, facts.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(facts), encoding="utf-8")
    return path
