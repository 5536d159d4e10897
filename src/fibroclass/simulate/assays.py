"""Secondary readouts of simulated screen wells, from their ground truth: what an ELISA and a scratch assay
on the same plates would measure (the `--assay` input of `fibroclass score`, io.assays).

- `il6_pg_ml`: secreted IL-6. Per cell it rises log-linearly with severity, so that a typical GoF donor
  well (severity ~0.93) secretes `IL6_FOLD` (12x) a typical healthy one (~0.06, `IL6_HEALTHY_PG_ML`);
  the well total scales with the cells left (viability: a toxic dose lowers IL-6 without any rescue);
  ELISA noise is log-normal (`IL6_CV`), drawn from the well's own stream.
- `wound_closure_pct`: scratch closure at 24 h, linear in severity from `WOUND_HEALTHY_PCT` (healthy) to
  `WOUND_GOF_PCT` (GoF), times viability (dead cells do not migrate), plus `WOUND_SD_PCT` noise.
Neither depends on the off-target morphology, so a morphology change off the disease axis leaves them be.
`assays.yaml` next to the CSV gives labels, units and IL-6's log scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fibroclass import schema
from fibroclass.simulate.plates import WellPlan
from fibroclass.simulate.seeding import rng_for

HEALTHY_SEVERITY = 0.06  # mean baseline severity of healthy donors (plates.make_donor: uniform 0..0.12)
GOF_SEVERITY = 0.925  # ... and of GoF donors (uniform 0.85..1.0)
IL6_HEALTHY_PG_ML = 40.0
IL6_FOLD = 12.0  # GoF vs healthy (STAT4 GoF fibroblasts, Baghdassarian et al. 2023)
IL6_CV = 0.15
WOUND_HEALTHY_PCT = 85.0
WOUND_GOF_PCT = 35.0
WOUND_SD_PCT = 5.0
ASSAY_COLUMNS = (schema.PM_PLATE, schema.PM_WELL, "il6_pg_ml", "wound_closure_pct")
ASSAY_SPECS = {
    "il6_pg_ml": {"label": "IL-6", "unit": "pg/mL", "scale": "log"},
    "wound_closure_pct": {"label": "wound closure", "unit": "%", "scale": "linear"},
}


def assay_values(plan: WellPlan, seed: int) -> tuple[float, float]:
    """(IL-6 pg/mL, wound closure %) of one planned well."""
    rng = rng_for(seed, plan.plate, plan.spec.well, "assays")
    sev, via = plan.truth["severity"], plan.truth["viability"]
    t = (sev - HEALTHY_SEVERITY) / (GOF_SEVERITY - HEALTHY_SEVERITY)  # 0 healthy-like, 1 GoF-like
    il6 = IL6_HEALTHY_PG_ML * IL6_FOLD**t * via * float(np.exp(rng.normal(0.0, IL6_CV)))
    wound = (WOUND_HEALTHY_PCT - (WOUND_HEALTHY_PCT - WOUND_GOF_PCT) * t) * via + rng.normal(
        0.0, WOUND_SD_PCT
    )
    return round(il6, 2), round(float(np.clip(wound, 0.0, 100.0)), 2)


def assay_frame(plans: Sequence[WellPlan], seed: int) -> pd.DataFrame:
    """One row per well: plate, well, il6_pg_ml, wound_closure_pct."""
    rows = [(p.plate, p.spec.well, *assay_values(p, seed)) for p in plans]
    return pd.DataFrame(rows, columns=list(ASSAY_COLUMNS))


def write_assays(out: Path, plans: Sequence[WellPlan], seed: int) -> Path:
    """Write `out/assays.csv` and its `out/assays.yaml` (labels, units, scales); returns the CSV path."""
    path = Path(out) / "assays.csv"
    assay_frame(plans, seed).to_csv(path, index=False)
    path.with_suffix(".yaml").write_text(yaml.safe_dump(ASSAY_SPECS, sort_keys=False, allow_unicode=True))
    return path


__all__ = ["ASSAY_COLUMNS", "ASSAY_SPECS", "assay_frame", "assay_values", "write_assays"]
