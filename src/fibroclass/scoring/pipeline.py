"""`score`: plate folders + plate map + model → field scores → wells → per-plate rescue, QC, outputs.

Two stages, so that memory stays flat however many plates are scored and runs can resume or be split:

1. Field stage: an engine (`scoring.engines`: `local`, DataLoader workers on this machine, or `ray`, Ray
   Data on a cluster) decodes the fields, computes the per-field features of `scoring.fields.features`,
   runs the model and streams finished chunks to `<out>/parts/<plate>/chunk-NNNNN.*` atomically with a
   fingerprint of inputs, model and settings (`scoring.fields.parts`). Done chunks are skipped, so a
   killed run resumes. `plates=[...]` scores only those plates and merges nothing: one job per plate
   (SLURM arrays, Nextflow, Snakemake), then one `merge_only` run.
2. Merge (`merge_parts`), in this process: once every chunk exists, plates are read back one at a time
   in index order: per-plate field steps → well aggregation; then normalization → plate QC → flags →
   compounds → outputs, written atomically. The merge is deterministic (index order, not completion
   order), so every engine and every split gives the same files; a merge whose inputs are unchanged
   (`parts/merged.json`) is skipped: a finished command re-run does no work and changes nothing.

One writer per output folder (`scoring.runlock`): a second run into a folder that a live process is
writing is refused; the lock of a killed run is taken over. `score_index` runs everything after image
discovery, so callers holding a field index (and tests) can skip `io.index`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fibroclass.data.illumination import IlluminationSettings
from fibroclass.errors import FibroclassError
from fibroclass.io.assays import read_assays
from fibroclass.schema import FIELD_KEYS, PLATE
from fibroclass.scoring.config import ScoreConfig, load_score_config
from fibroclass.scoring.engines import FieldEngine, make_engine
from fibroclass.scoring.fields.features import FIELD_FEATURES, FieldFeature, configure_features, feature_id
from fibroclass.scoring.fields.inference import PRECISIONS, TileModel, field_paths
from fibroclass.scoring.fields.parts import PARTS_DIR, model_fingerprint, plan_chunks, plate_slug, sha_of
from fibroclass.scoring.merge import merge_parts
from fibroclass.scoring.outputs import ScoreResult
from fibroclass.scoring.runlock import writing
from fibroclass.scoring.wells.assays import check_assays

MERGE_PRECISIONS = tuple(p for p in PRECISIONS if p != "auto")


@dataclass
class PartsResult:
    """What a `plates=[...]` run did: fields scored into `OUT/parts/`, nothing merged."""

    out_dir: Path
    plates: list[str]  # plates of this run
    chunks_scored: int
    chunks_reused: int
    other_plates: int  # plates of the index left to other jobs (then one merge_only run)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _resolve_config(config: ScoreConfig | str | Path | None) -> ScoreConfig:
    return config if isinstance(config, ScoreConfig) else load_score_config(config)


def _plate_selection(index: pd.DataFrame, plates: Sequence[str] | None) -> list[str] | None:
    if plates is None:
        return None
    known = list(dict.fromkeys(index[PLATE].astype(str)))
    wanted = list(dict.fromkeys(str(p) for p in plates))
    unknown = [p for p in wanted if p not in known]
    if unknown or not wanted:
        shown = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
        raise FibroclassError(f"plate(s) {unknown or '[]'} not in the field index (its plates: {shown})")
    return wanted


def _plate_dirs(out: Path, plates: Sequence[str] | None) -> list[Path] | None:
    return None if plates is None else [out / PARTS_DIR / plate_slug(p) for p in plates]


# -- entry points ---------------------------------------------------------------------------------------
def score_index(
    index: pd.DataFrame,
    model: TileModel,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    progress: bool = True,
    run_info: dict[str, Any] | None = None,
    plates: Sequence[str] | None = None,
    merge_only: bool = False,
    field_features: Sequence[FieldFeature] | None = None,
    engine: str | FieldEngine = "local",
    ray_address: str | None = None,
) -> ScoreResult | PartsResult:
    """Score a field index (one row per field: keys, plate-map columns, `path_<channel>`) and write outputs.

    Resumes from `<out_dir>/parts/`. `plates` scores only those plates into the parts and returns a
    `PartsResult` (merge with `merge_only=True` once every plate is scored; merging while chunks are
    missing is a user error). `engine` is `local`, `ray` (`ray_address`: None starts a local cluster,
    `auto` or `ray://HOST:PORT` joins one) or a `scoring.engines.FieldEngine`. `field_features` default
    to `scoring.fields.features.FIELD_FEATURES`.
    """
    t0 = time.perf_counter()
    cfg = _resolve_config(config)
    missing = [k for k in FIELD_KEYS if k not in index.columns]
    if missing:
        raise FibroclassError(f"field index lacks key column(s) {missing}")
    if index.empty:
        raise FibroclassError("field index is empty: no fields to score")
    if plates is not None and merge_only:
        raise FibroclassError("a merge covers every plate: give either plates or merge_only, not both")
    index = index.reset_index(drop=True)  # row order kept: io.index sorts by plate, well (plate order), site
    selected = _plate_selection(index, plates)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eng = make_engine(engine, ray_address) if isinstance(engine, str) else engine
    with writing(out, _plate_dirs(out, selected)) as lock_notes:
        try:
            result = _score_locked(
                index, model, out, cfg, progress, run_info, selected, merge_only, field_features, eng
            )
        finally:
            eng.close()
    result.warnings[:0] = lock_notes
    result.seconds = time.perf_counter() - t0
    return result


def _score_locked(
    index: pd.DataFrame,
    model: TileModel,
    out: Path,
    cfg: ScoreConfig,
    progress: bool,
    run_info: dict[str, Any] | None,
    plates: list[str] | None,
    merge_only: bool,
    field_features: Sequence[FieldFeature] | None,
    engine: FieldEngine,
) -> ScoreResult | PartsResult:
    features = list(FIELD_FEATURES if field_features is None else field_features)
    features = configure_features(features, cfg.readout)
    field_paths(index, model.spec.channels)  # a missing channel column is a user error before any work
    if cfg.assays:  # a bad readout file, plate or column name: an error before any work, too
        check_assays(read_assays(cfg.assays), index)
    per_plate = IlluminationSettings.from_dict((model.spec.extra or {}).get("illumination")).enabled
    weights, feature_ids = model_fingerprint(model), [feature_id(f) for f in features]
    # A merge runs anywhere (a CPU node after GPU jobs): chunks scored at any precision are accepted.
    precisions = list(MERGE_PRECISIONS) if merge_only else [engine.precision(model, cfg)]
    stage, *also = (sha_of([weights, feature_ids, p]) for p in precisions)
    chunks = plan_chunks(
        index, out / PARTS_DIR, model.spec.channels, stage, cfg.chunk_fields, per_plate, plates, also
    )
    done = {id(c) for c in chunks if c.is_done()}
    todo = [] if merge_only else [c for c in chunks if id(c) not in done]
    engine.score_chunks(index, todo, model, cfg, features, progress)
    engine.close()  # e.g. the local Ray cluster: the merge runs in this process
    reused = len(done)
    if plates is not None:
        return PartsResult(out, plates, len(todo), reused, index[PLATE].astype(str).nunique() - len(plates))
    incomplete = [c for c in chunks if not c.is_done()]
    if incomplete:
        names = list(dict.fromkeys(c.plate for c in incomplete))
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise FibroclassError(
            f"cannot merge {out}: {len(names)} plate(s) not scored yet ({shown}); score them first "
            "(with the same model and settings)"
        )
    result = merge_parts(index, chunks, model, cfg, out, run_info)
    result.chunks_scored, result.chunks_reused = len(todo), reused
    return result


def score(
    roots: Sequence[str | Path],
    platemap: str | Path,
    model: TileModel,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    progress: bool = True,
    model_uri: str | None = None,
    plates: Sequence[str] | None = None,
    merge_only: bool = False,
    engine: str | FieldEngine = "local",
    ray_address: str | None = None,
    **overrides: Any,
) -> ScoreResult | PartsResult:
    """Discover the fields under `roots`, join `platemap`, score them with the model and write `out_dir`.

    `model` is a loaded classifier (`tracking.models.load_classifier` resolves MLflow URIs); `model_uri`,
    when given, is recorded in run.json as where it came from. `overrides` (ScoreConfig attribute names,
    e.g. `batch_size=16, device="cpu"`; None keeps the config's value) go through
    `ScoreConfig.with_overrides`, as the CLI options of `config.SCORE_OPTIONS` do.
    `plates`, `merge_only`, `engine` and `ray_address` as in `score_index` (plate jobs and their merge must
    be given the same roots, plate map, model and config).
    """
    from fibroclass.io.index import build_index

    cfg = _resolve_config(config).with_overrides(**overrides)
    result = build_index(
        [Path(r) for r in roots],
        platemap,
        naming=cfg.naming,
        channel_map=cfg.channels,
        column_map=cfg.platemap_columns or None,
        pattern=cfg.pattern,
        z=cfg.z,
        max_megapixels=cfg.max_megapixels,  # oversize fields are flagged from their headers, never decoded
        lenient=True,  # a bad plate-map row or a missing channel file is a warning/flagged field, not an exit
    )
    index = result.index
    run_info = {
        "model_uri": model_uri or type(model).__name__,
        "roots": [str(Path(r).resolve()) for r in roots],
        "platemap": str(Path(platemap).resolve()),
        "out_dir": str(Path(out_dir).resolve()),
        "warnings": list(result.warnings),  # what discovery and the plate map left out, kept with the run
    }
    scored = score_index(
        index, model, out_dir, cfg, progress=progress, run_info=run_info, plates=plates,
        merge_only=merge_only, engine=engine, ray_address=ray_address,
    )  # fmt: skip
    scored.warnings[:0] = list(result.warnings)
    return scored


__all__ = [
    "PartsResult",
    "ScoreResult",
    "merge_parts",
    "score",
    "score_index",
]
