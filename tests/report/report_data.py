"""A scored screen for the report tests, built with the real readout steps: two plates (96 and 384 wells),
real 2-channel TIFF fields on disk, well embeddings that move along a disease axis with rescue (and off
it for an off-target compound), an IL-6 readout normalized to the controls and compared per compound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from fibroclass.io.assays import AssaySpec
from fibroclass.schema import COMPOUND, CONC, PLATE, QC_PASS, QC_REASON, ROLE, WELL, path_col
from fibroclass.scoring.compounds.assays import assay_compound_readout
from fibroclass.scoring.compounds.calls import call_compounds
from fibroclass.scoring.compounds.doseresponse import fit_compounds, predict_4pl
from fibroclass.scoring.config import ReadoutSettings
from fibroclass.scoring.wells.assays import normalize_assays

DOSES = [10.0 / 3**i for i in range(8)]
NAMES = ("rescuer", "killer", "wanderer")
IL6 = AssaySpec("il6_pg_ml", "IL-6", "pg/mL", "log")
QUERY = "role in ['treatment', 'reference'] and concentration_uM > 0"


def plate_wells(
    plate: str, rows: int, cols: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Controls in the outer columns; three compounds × 8 doses in the inner wells; (wells, embeddings)."""
    recs = []
    for r in range(rows):
        for c in range(cols):
            well = f"{chr(65 + r)}{c + 1:02d}"
            if c in (0, cols - 1):
                role = ("healthy", "disease", "reference")[r % 3]
                recs.append(
                    (
                        plate,
                        well,
                        role,
                        "ruxolitinib" if role == "reference" else "DMSO",
                        1.0 if role == "reference" else 0.0,
                    )
                )
            else:
                k = (r * (cols - 2) + c - 1) % 24
                recs.append((plate, well, "treatment", NAMES[k // 8], DOSES[k % 8]))
    df = pd.DataFrame(recs, columns=[PLATE, WELL, ROLE, COMPOUND, CONC])
    conc = np.maximum(df[CONC].to_numpy(), 1e-6)
    rescue = np.where(df[COMPOUND] == "rescuer", predict_4pl(conc, (0, 100, np.log10(0.3), 1.2)), 0.0)
    rescue = np.where(df[ROLE] == "healthy", 100.0, np.where(df[ROLE] == "reference", 90.0, rescue))
    df["rescue_pct"] = rescue + rng.normal(0, 6, len(df))
    via = np.where(df[COMPOUND] == "killer", 100 - predict_4pl(conc, (0, 100, 0.0, 2.0)), 100.0)
    df["viability_pct"] = via + rng.normal(0, 5, len(df))
    df["disease_score"] = 3 - 6 * df["rescue_pct"] / 100 + rng.normal(0, 0.2, len(df))
    off = np.where(df[COMPOUND] == "wanderer", predict_4pl(conc, (0, 6, 0.0, 1.5)), 0.0)
    df["offtarget_z"] = off + rng.normal(0, 0.7, len(df))
    df["on_target_pct"] = df["rescue_pct"]
    df["n_fields"], df["n_fields_used"] = 2, 2
    df["flags"] = np.where(off > 3, "offtarget", "")
    frac = np.clip(df["rescue_pct"].to_numpy() / 100, -0.2, 1.2)
    df["il6_pg_ml"] = (
        480
        * 12 ** (-frac)
        * np.clip(df["viability_pct"], 1, None)
        / 100
        * np.exp(rng.normal(0, 0.12, len(df)))
    )
    emb = np.zeros((len(df), 8))
    emb[:, 0] = 1 - df["rescue_pct"] / 100  # the disease axis
    emb[:, 1] = off / 3  # the off-target direction
    emb += rng.normal(0, 0.06, emb.shape)
    return df, emb


def fields_with_tiffs(wells: pd.DataFrame, folder: Path, rng: np.random.Generator) -> pd.DataFrame:
    """Two real uint16 TIFF fields per well (actin brighter where the well is more diseased)."""
    f = wells.loc[wells.index.repeat(2)].reset_index(drop=True)
    f["Metadata_Site"] = np.tile([1, 2], len(wells))
    f[QC_PASS] = rng.random(len(f)) > 0.05
    f[QC_REASON] = np.where(f[QC_PASS], "", rng.choice(["blur", "empty", "debris"], len(f)))
    for ch, name in enumerate(("actin", "nuclei")):
        f[path_col(name)] = [
            str(folder / p / f"{p}_{w}_s{s}_w{ch + 1}.tif")
            for p, w, s in zip(f[PLATE], f[WELL], f["Metadata_Site"], strict=True)
        ]
    yy, xx = np.mgrid[:48, :48]
    for row in f.itertuples(index=False):
        level = 1500 + 1500 * float(np.clip(1 - row.rescue_pct / 100, 0, 1.5))
        for ch, name in enumerate(("actin", "nuclei")):
            path = Path(getattr(row, path_col(name)))
            path.parent.mkdir(parents=True, exist_ok=True)
            stripes = np.sin(xx / 3 + yy / (6 + 10 * ch)) * 600
            tifffile.imwrite(
                path, (level + stripes + rng.random((48, 48)) * 400 + 600 * ch).astype(np.uint16)
            )
    return f


def scored_screen(
    folder: Path, seed: int = 0, plates: tuple[tuple[str, int, int], ...] = (("P96", 8, 12), ("P384", 16, 24))
) -> dict:
    """Everything `render_interactive_report` takes, from the real readout steps."""
    rng = np.random.default_rng(seed)
    parts = [plate_wells(name, r, c, rng) for name, r, c in plates]
    emb = np.concatenate([e for _, e in parts])
    wells = pd.concat([w for w, _ in parts], ignore_index=True)
    wells, summary = normalize_assays(wells, wells[ROLE], {"il6_pg_ml": IL6})
    fields = fields_with_tiffs(wells, folder / "images", rng)
    fits = fit_compounds(wells, {"n_boot": 30})
    compounds = call_compounds(wells, fits)
    plate_qc = {
        "P96": {"z_prime": 0.71, "ssmd": 9.1, "pass": True, "reasons": [], "n_fields": 192, "n_fields_flagged": 9,
                "healthy_mean": -3.0, "healthy_sd": 0.2, "n_healthy": 3, "disease_mean": 3.0, "disease_sd": 0.2, "n_disease": 3,
                "domain_shift": {"score": 0.12, "threshold": 0.3, "out_of_distribution": False}},
        "P384": {"z_prime": 0.31, "ssmd": 4.0, "pass": False, "reasons": ["Z′ 0.31 < 0.5"],
                 "domain_shift": {"score": 0.45, "threshold": 0.3, "out_of_distribution": True}},
    }  # fmt: skip
    for p, entry in summary.items():
        plate_qc.setdefault(p, {})["assays"] = entry
    compounds, assay_fits = assay_compound_readout(
        wells, compounds, plate_qc, QUERY, ReadoutSettings(), {"il6_pg_ml": IL6}
    )
    return {
        "fields": fields,
        "wells": wells,
        "compounds": compounds,
        "plate_qc": {"z_prime_min": 0.5, "plates": plate_qc},
        "fits": fits,
        "well_embeddings": emb,
        "assay_specs": {"il6_pg_ml": IL6},
        "assay_fits": assay_fits,
    }
