"""`score`: plate folders + plate map + model → field scores → wells → per-plate rescue, QC, outputs.

Two stages, so that memory stays flat however many plates are scored and runs can resume or be sharded:

1. Field stage (`_score_chunks`): fields are decoded in DataLoader workers (per-field features of
   `scoring.fields.features` computed there on the decoded pixels), scored in cross-field batches, and
   streamed to `<out>/parts/<plate>/chunk-NNNNN.*` atomically with a fingerprint of inputs, model and
   settings (`scoring.fields.parts`). Done chunks are skipped, so a killed run resumes; `shard=(K, N)` scores
   only every N-th plate (sorted names) from K, so N processes or nodes can share a campaign.
2. Merge (`merge_parts`): once every chunk exists (whichever shard finishes last merges, under a file
   lock), plates are read back one at a time in index order: per-plate field steps → well aggregation;
   then normalization → plate QC → flags → compounds → outputs, written atomically. The merge is
   deterministic (index order, not completion order), so sharded and single-process runs give the same
   files; a merge whose inputs are unchanged (`parts/merged.json`) is skipped: a finished command
   re-run does no work and changes nothing.

`score_index` runs everything after image discovery, so callers holding a field index (and tests) can
skip `io.index`.
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
from fibroclass.scoring.fields.features import FIELD_FEATURES, FieldFeature, configure_features, feature_id
from fibroclass.scoring.fields.inference import (
    TileModel,
    field_paths,
    make_runner,
)
from fibroclass.scoring.fields.parts import PARTS_DIR, model_fingerprint, plan_chunks, sha_of, shard_plates
from fibroclass.scoring.fields.stage import _score_chunks
from fibroclass.scoring.merge import merge_parts
from fibroclass.scoring.outputs import ScoreResult
from fibroclass.scoring.wells.assays import check_assays


@dataclass
class ShardResult:
    """A shard's (or an unfinished run's) progress when other plates still lack chunks: nothing merged."""

    out_dir: Path
    shard: tuple[int, int] | None
    plates: list[str]  # plates of this shard
    chunks_scored: int
    chunks_reused: int
    missing_plates: list[str]  # plates of other shards not yet complete
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _resolve_config(config: ScoreConfig | str | Path | None) -> ScoreConfig:
    return config if isinstance(config, ScoreConfig) else load_score_config(config)


# -- entry points ---------------------------------------------------------------------------------------
def score_index(
    index: pd.DataFrame,
    model: TileModel,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    progress: bool = True,
    run_info: dict[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    merge_only: bool = False,
    field_features: Sequence[FieldFeature] | None = None,
) -> ScoreResult | ShardResult:
    """Score a field index (one row per field: keys, plate-map columns, `path_<channel>`) and write outputs.

    Resumes from `<out_dir>/parts/`. With `shard=(K, N)` only shard K's plates are scored; the outputs
    are merged when every plate is complete (else a `ShardResult` is returned). `merge_only` scores
    nothing and merges (a user error while chunks are missing). `field_features` default to
    `scoring.fields.features.FIELD_FEATURES`.
    """
    t0 = time.perf_counter()
    cfg = _resolve_config(config)
    missing = [k for k in FIELD_KEYS if k not in index.columns]
    if missing:
        raise FibroclassError(f"field index lacks key column(s) {missing}")
    if index.empty:
        raise FibroclassError("field index is empty: no fields to score")
    index = index.reset_index(drop=True)  # row order kept: io.index sorts by plate, well (plate order), site
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    features = list(FIELD_FEATURES if field_features is None else field_features)
    features = configure_features(features, cfg.readout)
    runner = make_runner(model, cfg.device, cfg.precision, cfg.compile)
    field_paths(index, model.spec.channels)  # a missing channel column is a user error before any work
    if cfg.assays:  # a bad readout file, plate or column name: an error before any work, too
        check_assays(read_assays(cfg.assays), index)
    stage = sha_of([model_fingerprint(model), [feature_id(f) for f in features], runner.precision])
    per_plate = IlluminationSettings.from_dict((model.spec.extra or {}).get("illumination")).enabled
    chunks = plan_chunks(index, out / PARTS_DIR, model.spec.channels, stage, cfg.chunk_fields, per_plate)
    mine = shard_plates(index[PLATE].astype(str), shard)
    done = {id(c) for c in chunks if c.is_done()}
    todo = [] if merge_only else [c for c in chunks if c.plate in mine and id(c) not in done]
    _score_chunks(index, todo, runner, cfg, features, progress)

    incomplete = [c for c in chunks if not c.is_done()]
    reused = sum(1 for c in chunks if id(c) in done and c.plate in mine)
    if incomplete:
        plates = list(dict.fromkeys(c.plate for c in incomplete))
        if merge_only:
            shown = ", ".join(plates[:5]) + (" ..." if len(plates) > 5 else "")
            raise FibroclassError(
                f"cannot merge {out}: {len(plates)} plate(s) not scored yet ({shown}); run their shards first"
            )
        return ShardResult(
            out, shard, sorted(mine), len(todo), reused, plates, seconds=time.perf_counter() - t0
        )
    result = merge_parts(index, chunks, model, cfg, out, run_info)
    result.chunks_scored, result.chunks_reused = len(todo), reused
    result.seconds = time.perf_counter() - t0
    return result


def score(
    roots: Sequence[str | Path],
    platemap: str | Path,
    model: TileModel,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    progress: bool = True,
    model_uri: str | None = None,
    shard: tuple[int, int] | None = None,
    merge_only: bool = False,
    **overrides: Any,
) -> ScoreResult | ShardResult:
    """Discover the fields under `roots`, join `platemap`, score them with the model and write `out_dir`.

    `model` is a loaded classifier (`tracking.models.load_classifier` resolves MLflow URIs); `model_uri`,
    when given, is recorded in run.json as where it came from. `overrides` (ScoreConfig attribute names,
    e.g. `batch_size=16, device="cpu"`; None keeps the config's value) go through
    `ScoreConfig.with_overrides`, as the CLI options of `config.SCORE_OPTIONS` do.
    `shard` and `merge_only` as in `score_index` (every shard must be given the same arguments).
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
        index, model, out_dir, cfg, progress=progress, run_info=run_info, shard=shard, merge_only=merge_only
    )
    scored.warnings[:0] = list(result.warnings)
    return scored


__all__ = [
    "ScoreResult",
    "ShardResult",
    "merge_parts",
    "score",
    "score_index",
]
