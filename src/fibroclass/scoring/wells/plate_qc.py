"""Plate acceptance from the control wells: Z′ factor (and robust Z′, SSMD) on the scale `rescue_pct` is
computed on, p(disease) separation as a classification figure, control statistics and flagged fields."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fibroclass.schema import PLATE, QC_PASS
from fibroclass.scoring.fields.features import FEATURE_ERROR, feature_error_counts
from fibroclass.scoring.wells.normalize import PlateControls


def _mean_sd(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    return float(np.mean(x)), float(np.std(x, ddof=1))


def z_prime(healthy: np.ndarray, disease: np.ndarray) -> float:
    """Z′ = 1 − 3(σ_h + σ_d)/|μ_h − μ_d| (sample SDs); NaN with < 2 values per group or equal means."""
    mh, sh = _mean_sd(healthy)
    md, sd = _mean_sd(disease)
    gap = abs(mh - md)
    if not math.isfinite(gap) or gap == 0:
        return float("nan")
    return 1.0 - 3.0 * (sh + sd) / gap


def ssmd(healthy: np.ndarray, disease: np.ndarray) -> float:
    """SSMD = (μ_d − μ_h)/√(σ_h² + σ_d²) (sample SDs); ±inf when both SDs are 0, NaN with < 2 values."""
    mh, sh = _mean_sd(healthy)
    md, sd = _mean_sd(disease)
    denom = math.sqrt(sh**2 + sd**2)
    diff = md - mh
    if not math.isfinite(denom) or not math.isfinite(diff):
        return float("nan")
    if denom == 0:
        return float("nan") if diff == 0 else math.copysign(math.inf, diff)
    return diff / denom


def robust_z_prime(healthy: np.ndarray, disease: np.ndarray) -> float:
    """Robust Z′ = 1 − 3(s_h + s_d)/|m_h − m_d| with medians m and s = 1.4826·MAD; NaN with < 3 values."""
    h, d = (np.asarray(x, dtype=float) for x in (healthy, disease))
    h, d = h[np.isfinite(h)], d[np.isfinite(d)]
    if len(h) < 3 or len(d) < 3:
        return float("nan")
    mh, md = float(np.median(h)), float(np.median(d))
    gap = abs(mh - md)
    if gap == 0:
        return float("nan")
    mad = 1.4826 * (float(np.median(np.abs(h - mh))) + float(np.median(np.abs(d - md))))
    return 1.0 - 3.0 * mad / gap


def _auroc(healthy: np.ndarray, disease: np.ndarray) -> float:
    """P(disease control scores above a healthy one), ties count half; NaN without both groups."""
    h, d = (np.asarray(x, dtype=float) for x in (healthy, disease))
    h, d = h[np.isfinite(h)], d[np.isfinite(d)]
    if len(h) == 0 or len(d) == 0:
        return float("nan")
    diff = d[:, None] - h[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def classification_figures(pc: PlateControls) -> dict[str, float]:
    """How well p(disease) = sigmoid(logit) tells the control wells apart: a classification figure, not
    the assay window (p saturates at 0 and 1, so its Z′ says nothing about graded rescue)."""
    h, d = _sigmoid(pc.healthy_logits), _sigmoid(pc.disease_logits)
    return {
        "auroc": _auroc(h, d),
        "z_prime_p_disease": z_prime(h, d),
        "healthy_mean_p": float(np.nanmean(h)) if len(h) else float("nan"),
        "disease_mean_p": float(np.nanmean(d)) if len(d) else float("nan"),
    }


def _scores_on(pc: PlateControls, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """The control scores the gate uses: the readout's own ("readout") or p(disease) ("probability")."""
    if scale == "probability":
        return _sigmoid(pc.healthy_logits), _sigmoid(pc.disease_logits)
    return pc.healthy_scores, pc.disease_scores


def plate_qc(
    fields: pd.DataFrame,
    controls: dict[str, PlateControls],
    z_prime_min: float = 0.5,
    scale: str = "readout",
    meter: str = "",
) -> dict[str, dict]:
    """Per plate: `z_prime`, `z_prime_robust`, `ssmd` on the scale `rescue_pct` is computed on (the
    controls' `readout_score`, cross-fitted), control means/SDs/n, `classification` (p(disease): AUROC
    and its Z′, reported, never gating), `n_fields`, `n_fields_flagged`, `n_feature_errors`
    (fields where a per-field feature raised) with `feature_errors` ({feature: {exception type: fields}}), `controls_ok` (rescue
    computable), `pass` (controls usable, in the right order and Z′ ≥ `z_prime_min`) and `reasons`.
    Z′ is blind to direction, so healthy controls the CNN scores *more* diseased than the disease
    controls (a swapped plate map, an inverted model) fail the plate on their own.
    `scale="probability"` gates on p(disease) instead (not recommended: it hides a narrow assay window).
    """
    plates = fields[PLATE].astype(str)
    n_fields = plates.value_counts()
    n_flagged = (~fields[QC_PASS].astype(bool)).groupby(plates).sum()
    errors = (
        fields[FEATURE_ERROR].fillna("").astype(str)
        if FEATURE_ERROR in fields
        else pd.Series("", fields.index)
    )
    out: dict[str, dict] = {}
    for plate, pc in controls.items():
        h_scores, d_scores = _scores_on(pc, scale)
        zp = z_prime(h_scores, d_scores)
        reasons = list(pc.reasons)
        if pc.usable and not math.isfinite(zp):
            reasons.append("Z′ undefined (needs at least 2 wells per control group)")
        elif math.isfinite(zp) and zp < z_prime_min:
            reasons.append(f"Z′ {zp:.2f} < {z_prime_min:g}")
        h_logit, d_logit = pc.healthy_logits, pc.disease_logits
        if len(h_logit) and len(d_logit) and np.isfinite(h_logit).any() and np.isfinite(d_logit).any():
            mh, md = float(np.nanmean(h_logit)), float(np.nanmean(d_logit))
        else:
            mh, md = pc.healthy.mean, pc.disease.mean
        inverted = pc.usable and mh >= md
        if inverted:
            reasons.append(
                f"controls inverted: healthy mean CNN score {mh:.3g} ≥ disease {md:.3g} (plate map swapped?)"
            )
        out[plate] = {
            "z_prime": zp,
            "z_prime_robust": robust_z_prime(h_scores, d_scores),
            "ssmd": ssmd(h_scores, d_scores),
            "z_prime_scale": "probability" if scale == "probability" else pc.score,
            "readout_meter": meter,
            **pc.summary(),
            "classification": classification_figures(pc),
            "n_fields": int(n_fields.get(plate, 0)),
            "n_fields_flagged": int(n_flagged.get(plate, 0)),
            "n_feature_errors": int((errors[plates == plate] != "").sum()),
            "feature_errors": feature_error_counts(errors[plates == plate].tolist()),
            "controls_ok": pc.usable,
            "pass": bool(pc.usable and not inverted and math.isfinite(zp) and zp >= z_prime_min),
            "reasons": reasons,
        }
    return out
