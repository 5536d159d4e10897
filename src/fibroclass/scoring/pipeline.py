"""`score`: plate folders + plate map + model → field scores → wells → per-plate rescue, QC, outputs.

Steps (one module each): inference → (field QC, nuclei: hook, defaults for now) → aggregate → normalize
→ plate_qc → flags → compounds → outputs. `score_index` runs everything after image discovery, so callers
holding a field index (and tests) can skip `io.index`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fibroclass import __version__
from fibroclass.errors import FibroclassError
from fibroclass.schema import FIELD_KEYS
from fibroclass.scoring.aggregate import aggregate_wells
from fibroclass.scoring.compounds import compound_table, reference_dose_table
from fibroclass.scoring.config import ScoreConfig, load_score_config
from fibroclass.scoring.flags import flag_wells
from fibroclass.scoring.inference import TileModel, score_fields
from fibroclass.scoring.normalize import normalize_plates
from fibroclass.scoring.outputs import write_outputs
from fibroclass.scoring.plate_qc import plate_qc


@dataclass
class ScoreResult:
    """Everything one scoring run produced (the same content as the files in `out_dir`)."""

    out_dir: Path
    fields: pd.DataFrame
    field_embeddings: np.ndarray
    wells: pd.DataFrame
    well_embeddings: np.ndarray
    compounds: pd.DataFrame
    plate_qc: dict[str, dict]
    reference_doses: pd.DataFrame  # rescue by dose of the reference compound(s); empty when absent
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_model(model: TileModel | str, trust_pickle: bool = False) -> TileModel:
    """A loaded classifier as-is, or one loaded from an MLflow URI (`models:/name@alias`, `runs:/...`)."""
    if not isinstance(model, str):
        return model
    try:
        from fibroclass.tracking.models import load_classifier  # lazy: tracking sits above scoring
    except ImportError as exc:
        raise FibroclassError(
            f"cannot load model {model}: fibroclass.tracking.models is unavailable"
        ) from exc
    return load_classifier(model, trust_pickle=trust_pickle)


def _resolve_config(config: ScoreConfig | str | Path | None) -> ScoreConfig:
    return config if isinstance(config, ScoreConfig) else load_score_config(config)


def score_index(
    index: pd.DataFrame,
    model: TileModel,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    progress: bool = True,
    run_info: dict[str, Any] | None = None,
) -> ScoreResult:
    """Score a field index (one row per field: keys, plate-map columns, `path_<channel>`) and write outputs."""
    t0 = time.perf_counter()
    cfg = _resolve_config(config)
    missing = [k for k in FIELD_KEYS if k not in index.columns]
    if missing:
        raise FibroclassError(f"field index lacks key column(s) {missing}")
    if index.empty:
        raise FibroclassError("field index is empty: no fields to score")
    index = index.reset_index(drop=True)  # row order kept: io.index sorts by plate, well (plate order), site

    fields, field_emb = score_fields(
        index, model, cfg.batch_size, cfg.device, progress=progress, num_workers=cfg.num_workers
    )
    # Hook: field QC (qc.py) and nuclei counts (nuclei.py) refine qc_pass/qc_reason/nuclei_count here.
    wells, well_emb = aggregate_wells(fields, field_emb)
    wells, controls = normalize_plates(wells, cfg.controls)
    qc = plate_qc(fields, controls, cfg.z_prime_min)
    # Hook: off-target scores (offtarget.py) fill `offtarget` here; NaN until then.
    wells["offtarget"] = np.nan
    wells = flag_wells(wells, qc)
    compounds = compound_table(wells, cfg.compounds)
    # Hook: 4PL fits (doseresponse.py) and calls (calls.py) fill the fit columns and `call` here.
    reference = reference_dose_table(wells, cfg.reference, cfg.compounds)

    warnings = [f"plate {p}: {r}" for p, q in qc.items() for r in q["reasons"]]
    n_bad = int((~fields["qc_pass"]).sum())
    if n_bad:
        warnings.append(f"{n_bad} of {len(fields)} field(s) failed QC (see qc_reason in fields.parquet)")
    info = {
        "fibroclass_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_spec": model.spec.to_dict(),
        "config": cfg.__dict__,
        "n_fields": len(fields),
        "n_wells": len(wells),
        "plates": sorted(qc),
        **(run_info or {}),
    }
    files = write_outputs(out_dir, fields, field_emb, wells, well_emb, compounds, qc, cfg.z_prime_min, info)
    return ScoreResult(
        out_dir=Path(out_dir),
        fields=fields,
        field_embeddings=field_emb,
        wells=wells,
        well_embeddings=well_emb,
        compounds=compounds,
        plate_qc=qc,
        reference_doses=reference,
        files=files,
        warnings=warnings,
        seconds=time.perf_counter() - t0,
    )


def score(
    roots: Sequence[str | Path],
    platemap: str | Path,
    model_uri: TileModel | str,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
) -> ScoreResult:
    """Discover the fields under `roots`, join `platemap`, score them with the model and write `out_dir`.

    `model_uri` is an MLflow model URI (or an already loaded classifier); `batch_size`, `device` and
    `num_workers` override the config's `inference` section when given.
    """
    from fibroclass.io.index import build_index

    cfg = _resolve_config(config)
    overrides = {"batch_size": batch_size, "device": device, "num_workers": num_workers}
    cfg = ScoreConfig(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    model = load_model(model_uri, trust_pickle=trust_pickle)
    result = build_index(
        [Path(r) for r in roots],
        platemap,
        naming=cfg.naming,
        channel_map=cfg.channels,
        column_map=cfg.platemap_columns or None,
        pattern=cfg.pattern,
    )
    index = result.index
    run_info = {
        "model_uri": model_uri if isinstance(model_uri, str) else type(model_uri).__name__,
        "roots": [str(Path(r).resolve()) for r in roots],
        "platemap": str(Path(platemap).resolve()),
        "out_dir": str(Path(out_dir).resolve()),
    }
    scored = score_index(index, model, out_dir, cfg, progress=progress, run_info=run_info)
    scored.warnings[:0] = list(result.warnings)
    return scored


__all__ = ["ScoreResult", "load_model", "score", "score_index"]
