"""Plate acceptance from the control wells: Z′ factor, SSMD, control statistics and flagged-field counts."""

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


def _on_scale(scores: np.ndarray, scale: str) -> np.ndarray:
    """Well disease scores (logits) as they are ("score") or as p(disease) = sigmoid(score) ("probability")."""
    scores = np.asarray(scores, dtype=float)
    return 1.0 / (1.0 + np.exp(-scores)) if scale == "probability" else scores


def plate_qc(
    fields: pd.DataFrame, controls: dict[str, PlateControls], z_prime_min: float = 0.5, scale: str = "score"
) -> dict[str, dict]:
    """Per plate: `z_prime`, `ssmd`, control means/SDs/n, `n_fields`, `n_fields_flagged`, `n_feature_errors`
    (fields where a per-field feature raised) with `feature_errors` ({feature: {exception type: fields}}), `controls_ok`
    (rescue computable), `pass` (controls usable, in the right order and Z′ ≥ `z_prime_min`) and
    `reasons` (why not). Z′ is blind to direction, so healthy controls scoring *more* diseased than the
    disease controls (a swapped plate map, an inverted model) fail the plate on their own.
    `scale`: Z′/SSMD on the well scores ("score") or on p(disease) = sigmoid(score) ("probability"),
    where a very confident healthy well and a confident one count alike."""
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
        h_scores, d_scores = _on_scale(pc.healthy_scores, scale), _on_scale(pc.disease_scores, scale)
        zp = z_prime(h_scores, d_scores)
        reasons = list(pc.reasons)
        if pc.usable and not math.isfinite(zp):
            reasons.append("Z′ undefined (needs at least 2 wells per control group)")
        elif math.isfinite(zp) and zp < z_prime_min:
            reasons.append(f"Z′ {zp:.2f} < {z_prime_min:g}")
        inverted = pc.usable and pc.healthy.mean >= pc.disease.mean
        if inverted:
            reasons.append(
                f"controls inverted: healthy mean score {pc.healthy.mean:.3g} ≥ disease {pc.disease.mean:.3g} "
                "(plate map swapped?)"
            )
        out[plate] = {
            "z_prime": zp,
            "ssmd": ssmd(h_scores, d_scores),
            "z_prime_scale": scale,
            # Both scales are reported, whichever gates the plate, so a saturating p(disease) cannot hide
            # a narrow window on the score that rescue % is computed on.
            "z_prime_score": z_prime(pc.healthy_scores, pc.disease_scores),
            "z_prime_probability": z_prime(
                _on_scale(pc.healthy_scores, "probability"), _on_scale(pc.disease_scores, "probability")
            ),
            **pc.summary(),
            "n_fields": int(n_fields.get(plate, 0)),
            "n_fields_flagged": int(n_flagged.get(plate, 0)),
            "n_feature_errors": int((errors[plates == plate] != "").sum()),
            "feature_errors": feature_error_counts(errors[plates == plate].tolist()),
            "controls_ok": pc.usable,
            "pass": bool(pc.usable and not inverted and math.isfinite(zp) and zp >= z_prime_min),
            "reasons": reasons,
        }
    return out
