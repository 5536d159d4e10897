"""`fibroclass explain`: Grad-CAM of chosen or representative fields of a field index for a registered model
(composite, heatmap, overlay PNGs and fields.csv).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from fibroclass import schema
from fibroclass.data.illumination import corrections_for_model
from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.evaluation import plots as evplots
from fibroclass.evaluation.calibration import apply_temperature
from fibroclass.models.predict import field_logits
from fibroclass.tracking.runs import end_run, log_folder, start_run


# -- Grad-CAM explanations ----------------------------------------------------------------------------
@dataclass
class ExplainResult:
    out_dir: Path
    run_id: str | None
    fields: pd.DataFrame  # one row per explained field: keys, donor, role, logit, p_disease, target, png


def select_fields(index: pd.DataFrame, specs: Sequence[str]) -> pd.DataFrame:
    """Rows of `index` named by ``PLATE:WELL:SITE`` (one field) or ``PLATE:WELL`` (all its sites)."""
    from fibroclass.io.wells import canonical_well

    picked = []
    for text in specs:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise FibroclassError(f"--field {text!r} must be PLATE:WELL:SITE or PLATE:WELL (e.g. P1:B03:2)")
        plate, well = parts[0], canonical_well(parts[1], f"--field {text}")
        sel = (index[schema.PLATE].astype(str) == plate) & (index[schema.WELL] == well)
        if len(parts) == 3:
            if not parts[2].isdigit():
                raise FibroclassError(f"--field {text!r}: site must be a number")
            sel &= index[schema.SITE].astype(int) == int(parts[2])
        if not sel.any():
            raise FibroclassError(f"--field {text}: no such field in the index")
        picked.append(index[sel])
    return pd.concat(picked).drop_duplicates(list(schema.FIELD_KEYS)).reset_index(drop=True)


def representative_fields(
    index: pd.DataFrame, model: nn.Module, per_role: int, candidates: int = 24, seed: int = 0
) -> pd.DataFrame:
    """`per_role` fields of each control role (healthy, disease, reference) spread over the model's p.

    Up to `candidates` random fields per role are scored; the chosen ones sit at evenly spaced
    quantiles of their p (the median for one), so the set shows typical and borderline fields.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for role in (schema.ROLE_HEALTHY, schema.ROLE_DISEASE, schema.ROLE_REFERENCE):
        rows = index[index[schema.ROLE] == role] if schema.ROLE in index.columns else index.iloc[:0]
        if rows.empty:
            continue
        rows = rows.iloc[np.sort(rng.permutation(len(rows))[:candidates])].reset_index(drop=True)
        p = apply_temperature(field_logits(model, rows, context=index), float(model.spec.temperature))
        order = np.argsort(p, kind="stable")
        qs = [0.5] if per_role == 1 else np.linspace(0.1, 0.9, per_role)
        picks = sorted({int(order[round(q * (len(order) - 1))]) for q in qs})
        chosen.append(rows.iloc[picks])
    if not chosen:
        raise FibroclassError("the index has no healthy, disease or reference fields to pick from")
    return pd.concat(chosen, ignore_index=True)


def explain(
    model_uri: str,
    index_path: str | Path,
    fields: Sequence[str] = (),
    pick: int = 0,
    out_dir: str | Path = "explain_out",
    target: str = "predicted",
    experiment: str | None = "fibroclass-explain",
    trust_pickle: bool = False,
) -> ExplainResult:
    """Grad-CAM figures (composite, heatmap, overlay) and field-resolution overlay PNGs for chosen fields."""
    import matplotlib.image as mpimg

    from fibroclass.io.index import read_index
    from fibroclass.models.gradcam import explanation_figure, gradcam_field, overlay
    from fibroclass.tracking.models import load_classifier

    if not fields and pick < 1:
        raise FibroclassError("name fields with --field PLATE:WELL:SITE or pick some with --pick N")
    model = load_classifier(model_uri, trust_pickle=trust_pickle)
    index = read_index(index_path)
    table = select_fields(index, fields) if fields else index.iloc[:0]
    if pick > 0:
        table = pd.concat([table, representative_fields(index, model, pick)], ignore_index=True)
        table = table.drop_duplicates(list(schema.FIELD_KEYS)).reset_index(drop=True)
    plates = index[index[schema.PLATE].isin(set(table[schema.PLATE]))]  # what scoring estimates from
    reader = FieldReader(table, model.spec.channels, corrections_for_model(plates, model.spec))
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    channels = tuple(model.spec.channels)
    rows = []
    for i, row in table.iterrows():
        img = reader(int(i))  # the model's view: bit depth, flat-field, pixel size, normalization
        exp = gradcam_field(model, img, target)  # type: ignore[arg-type]
        stem = f"{row[schema.PLATE]}_{row[schema.WELL]}_s{row[schema.SITE]}"
        who = " ".join(
            str(row[c]) for c in (schema.ROLE, schema.DONOR, schema.COMPOUND) if c in row and pd.notna(row[c])
        )
        evplots.save_figure(explanation_figure(img, exp, f"{stem} ({who})", channels), out / f"{stem}.png")
        mpimg.imsave(out / f"{stem}_overlay.png", overlay(img, exp.heatmap))
        rows.append(
            {
                **{
                    c: row[c]
                    for c in (*schema.FIELD_KEYS, schema.DONOR, schema.ROLE, schema.COMPOUND)
                    if c in row
                },
                "logit": exp.logit,
                schema.P_DISEASE: exp.p_disease,
                "target": exp.target,
                "layer": exp.layer,
                "heat_fraction": float((exp.heatmap > 0.5).mean()),
                "png": f"{stem}.png",
            }
        )
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "fields.csv", index=False)
    run_id = None
    if experiment:
        run_id = start_run(experiment, f"explain {model_uri}", tags={"fibroclass.model_uri": model_uri})
        log_folder(run_id, out, "explain")
        end_run(run_id)
    return ExplainResult(out, run_id, summary)
