"""`score`: plate folders + plate map + model → field scores → wells → per-plate rescue, QC, outputs.

Two stages, so that memory stays flat however many plates are scored and runs can resume or be sharded:

1. Field stage (`_score_chunks`): fields are decoded in DataLoader workers (per-field features of
   `scoring.features` computed there on the decoded pixels), scored in cross-field batches, and
   streamed to `<out>/parts/<plate>/chunk-NNNNN.*` atomically with a fingerprint of inputs, model and
   settings (`scoring.parts`). Done chunks are skipped, so a killed run resumes; `shard=(K, N)` scores
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

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fibroclass import __version__
from fibroclass.data.illumination import (
    ILLUMINATION_FILE,
    FieldReader,
    IlluminationSettings,
    corrections_for_model,
)
from fibroclass.errors import FibroclassError
from fibroclass.schema import FIELD_KEYS, FLAGS, PLATE, QC_PASS
from fibroclass.scoring import field_readout, readout
from fibroclass.scoring.aggregate import aggregate_wells
from fibroclass.scoring.compounds import reference_dose_table
from fibroclass.scoring.config import ScoreConfig, load_score_config
from fibroclass.scoring.features import FIELD_FEATURES, FieldFeature, feature_id
from fibroclass.scoring.inference import (
    FieldResult,
    Runner,
    TileModel,
    field_paths,
    iter_field_results,
    make_runner,
    progress_bar,
    results_frame,
    score_fields,
)
from fibroclass.scoring.normalize import normalize_plates
from fibroclass.scoring.outputs import FILES, field_table, well_table, write_outputs
from fibroclass.scoring.parts import PARTS_DIR, Chunk, model_fingerprint, plan_chunks, shard_plates
from fibroclass.scoring.plate_qc import plate_qc

MERGE_STAMP = "merged.json"


@dataclass
class ScoreResult:
    """Everything one scoring run produced (the same content as the files in `out_dir`)."""

    out_dir: Path
    fields: pd.DataFrame
    field_embeddings: np.ndarray  # read-only memory map of embeddings.npy
    wells: pd.DataFrame
    well_embeddings: np.ndarray
    compounds: pd.DataFrame
    plate_qc: dict[str, dict]
    reference_doses: pd.DataFrame  # rescue by dose of the reference compound(s); empty when absent
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chunks_scored: int = 0  # chunks scored by this call
    chunks_reused: int = 0  # chunks found done in parts/ (resumed or earlier runs)
    merged: bool = True  # False when the outputs were already up to date (nothing rewritten)


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


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# -- field stage -----------------------------------------------------------------------------------------
def _score_chunks(
    index: pd.DataFrame,
    chunks: Sequence[Chunk],
    runner: Runner,
    cfg: ScoreConfig,
    features: Sequence[FieldFeature],
    progress: bool,
) -> None:
    """Score the fields of `chunks` in one overlapped DataLoader pass, writing each chunk when complete."""
    if not chunks:
        return
    spec = runner.model.spec
    for folder in {c.stem.parent for c in chunks}:  # temp files of a killed run on these plates
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    rows = np.concatenate([c.rows for c in chunks])
    owner = np.repeat(np.arange(len(chunks)), [len(c.rows) for c in chunks])
    start = np.cumsum([0] + [len(c.rows) for c in chunks])
    got: list[list[FieldResult]] = [[] for _ in chunks]
    keys = index[list(FIELD_KEYS)]
    paths = field_paths(index.iloc[rows], spec.channels)
    # illumination/pixel-size correction as in training, estimated from each plate's own fields
    plate_dirs = {c.plate: c.stem.parent for c in chunks}
    corrections = corrections_for_model(index[index[PLATE].astype(str).isin(plate_dirs)], spec)
    for plate, folder in plate_dirs.items():  # the estimates this run applied, kept per plate
        corrections.save_plate(plate, folder / ILLUMINATION_FILE)
    reader = FieldReader(index.iloc[rows], spec.channels, corrections)
    with progress_bar(progress) as bar:
        task = bar.add_task("fields", total=len(rows))
        for r in iter_field_results(paths, runner, cfg.batch_size, cfg.num_workers, features, reader):
            k = int(owner[r.i])
            got[k].append(replace(r, i=r.i - int(start[k])))
            bar.advance(task, 1)
            if len(got[k]) == len(chunks[k].rows):
                chunk = chunks[k]
                table, emb = results_frame(
                    keys.iloc[chunk.rows], got[k], spec.temperature, spec.embedding_dim
                )
                chunk.write(table, emb)
                got[k] = []


def _plate_fields(fields: pd.DataFrame, cfg: ScoreConfig) -> pd.DataFrame:
    """Per-plate field steps on one plate's field table (feature columns already present).

    Field QC (field_readout.plate_field_qc: blur against the plate's own fields, empty against the well's
    other fields, debris) refines qc_pass / qc_reason here, so flagged fields never reach a well.
    """
    return field_readout.plate_field_qc(fields, cfg.readout_settings())


# -- merge -------------------------------------------------------------------------------------------------
class _NpyRows:
    """Writes a (n, d) float32 .npy file by row blocks at arbitrary positions (no memory map, flat RSS)."""

    def __init__(self, path: Path, n: int, d: int) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": (n, d),
        }
        np.lib.format.write_array_header_1_0(self.fh, header)
        self.offset = self.fh.tell()
        self.d = d
        self.fh.truncate(self.offset + n * d * 4)

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype="<f4")
        runs = np.flatnonzero(np.r_[True, np.diff(rows) != 1, True])  # contiguous row runs
        for a, b in zip(runs[:-1], runs[1:], strict=True):
            self.fh.seek(self.offset + int(rows[a]) * self.d * 4)
            self.fh.write(values[a:b].tobytes())

    def close(self) -> None:
        self.fh.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (one merging process at a time per output folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _warnings(qc: dict[str, dict], fields: pd.DataFrame) -> list[str]:
    warnings = [f"plate {p}: {r}" for p, q in qc.items() for r in q["reasons"]]
    n_bad = int((~fields[QC_PASS].astype(bool)).sum())
    if n_bad:
        warnings.append(f"{n_bad} of {len(fields)} field(s) failed QC (see qc_reason in fields.parquet)")
    return warnings


def _embedding_dim(chunks: Sequence[Chunk], default: int) -> int:
    dims = {np.load(c.files[1], mmap_mode="r").shape[1] for c in chunks}
    dims.discard(0)
    return max(dims) if dims else int(default)


def _plate_groups(chunks: Sequence[Chunk]) -> dict[str, list[Chunk]]:
    groups: dict[str, list[Chunk]] = {}
    for c in chunks:
        groups.setdefault(c.plate, []).append(c)
    return groups


def _read_plate(index: pd.DataFrame, chunks: Sequence[Chunk], dim: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One plate's field table (index rows + stored result columns) and embeddings from its chunks."""
    tables, embs = [], []
    for c in chunks:
        table, emb = c.read()
        if emb.shape[1] != dim:  # a chunk with only unreadable fields may lack the model's width
            emb = np.full((len(emb), dim), np.nan, dtype=np.float32)
        tables.append(table)
        embs.append(emb)
    rows = np.concatenate([c.rows for c in chunks])
    table = pd.concat(tables, ignore_index=True)
    fields = index.iloc[rows].reset_index(drop=True)
    keys = list(FIELD_KEYS)
    if not fields[keys].astype(str).equals(table[keys].astype(str)):
        raise FibroclassError(f"parts of plate {chunks[0].plate} do not match the field index; delete them")
    results = table.drop(columns=keys)
    fields = fields.drop(columns=[c for c in results.columns if c in fields.columns])
    return pd.concat([fields, results], axis=1), np.concatenate(embs)


def _load_outputs(out: Path, cfg: ScoreConfig) -> ScoreResult:
    """The result of an up-to-date run, read back from its files (nothing recomputed or rewritten)."""
    fields = pd.read_parquet(out / "fields.parquet")
    wells = pd.read_csv(out / "wells.csv")
    wells[FLAGS] = wells[FLAGS].fillna("").astype(str)
    qc = json.loads((out / "plate_qc.json").read_text())["plates"]
    return ScoreResult(
        out_dir=out,
        fields=fields,
        field_embeddings=np.load(out / "embeddings.npy", mmap_mode="r"),
        wells=wells,
        well_embeddings=np.load(out / "well_embeddings.npy"),
        compounds=pd.read_csv(out / "compounds.csv"),
        plate_qc=qc,
        reference_doses=reference_dose_table(wells, cfg.reference, cfg.compounds),
        files={name: out / name for name in (*FILES, "report.html") if (out / name).is_file()},
        warnings=_warnings(qc, fields),
        merged=False,
    )


def merge_parts(
    index: pd.DataFrame,
    chunks: Sequence[Chunk],
    model: TileModel,
    cfg: ScoreConfig,
    out_dir: str | Path,
    run_info: dict[str, Any] | None = None,
) -> ScoreResult:
    """Merge complete chunks into the run's output files (skipped when they are already up to date)."""
    out = Path(out_dir)
    parts_dir = out / PARTS_DIR
    info_key = {k: v for k, v in (run_info or {}).items() if k != "created"}
    index_hash = hashlib.sha256(index.to_csv(index=False).encode()).hexdigest()
    merge_fp = _sha([__version__, [c.fingerprint for c in chunks], cfg.__dict__, index_hash, info_key])
    stamp = parts_dir / MERGE_STAMP
    with _locked(parts_dir / ".merge.lock"):
        try:
            up_to_date = json.loads(stamp.read_text()).get("fingerprint") == merge_fp
        except (OSError, ValueError):
            up_to_date = False
        wanted = (*FILES, "report.html") if cfg.report else FILES
        if up_to_date and all((out / name).is_file() for name in wanted):
            return _load_outputs(out, cfg)
        stamp.unlink(missing_ok=True)

        dim = _embedding_dim(chunks, model.spec.embedding_dim)
        fd, tmp_name = tempfile.mkstemp(prefix=".embeddings.npy.", suffix=".tmp", dir=out)
        os.close(fd)
        emb_tmp = Path(tmp_name)
        writer = _NpyRows(emb_tmp, len(index), dim)
        field_tables, well_tables, well_embs = [], [], []
        try:
            for plate_chunks in _plate_groups(chunks).values():  # plates in index order
                fields_p, emb_p = _read_plate(index, plate_chunks, dim)
                rows = np.concatenate([c.rows for c in plate_chunks])
                writer.write(rows, emb_p)
                fields_p = _plate_fields(fields_p, cfg)
                wells_p, wemb_p = aggregate_wells(fields_p, emb_p)
                wells_p = field_readout.well_features(fields_p, wells_p)
                field_tables.append(fields_p.set_index(pd.Index(rows)))
                well_tables.append(wells_p)
                well_embs.append(wemb_p)
            writer.close()
            fields = pd.concat(field_tables).sort_index().reset_index(drop=True)
            wells = pd.concat(well_tables, ignore_index=True)
            well_emb = np.concatenate(well_embs)
            result = _finish(fields, emb_tmp, wells, well_emb, model, cfg, out, run_info)
        finally:
            writer.close()
            emb_tmp.unlink(missing_ok=True)
        stamp.write_text(json.dumps({"fingerprint": merge_fp}))
    return result


def _finish(
    fields: pd.DataFrame,
    field_emb_file: Path,
    wells: pd.DataFrame,
    well_emb: np.ndarray,
    model: TileModel,
    cfg: ScoreConfig,
    out: Path,
    run_info: dict[str, Any] | None,
) -> ScoreResult:
    """Cross-plate steps on the well table, then every output file (embeddings moved into place)."""
    wells, controls = normalize_plates(wells, cfg.controls)
    qc = plate_qc(fields, controls, cfg.z_prime_min, cfg.z_prime_scale)
    # off-target, organization agreement, flags, 4PL fits and calls (scoring.readout)
    ro = readout.finish(wells, well_emb, qc, cfg.controls, cfg.compounds, cfg.readout_settings())
    wells, compounds = ro.wells, ro.compounds
    for plate, entry in ro.organization.items():
        qc[plate]["organization"] = entry
    reference = reference_dose_table(wells, cfg.reference, cfg.compounds)

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
    files = write_outputs(out, fields, field_emb_file, wells, well_emb, compounds, qc, cfg.z_prime_min, info)
    if cfg.report:
        from fibroclass.scoring.readout_report import write_report  # matplotlib: only when reporting

        files["report.html"] = write_report(
            out, fields, wells, compounds, qc, ro.fits, ro.organization, model, cfg.report_gradcam
        )
    return ScoreResult(
        out_dir=out,
        fields=field_table(fields),  # as written: contract column order
        field_embeddings=np.load(out / "embeddings.npy", mmap_mode="r"),
        wells=well_table(wells),
        well_embeddings=well_emb,
        compounds=compounds,
        plate_qc=qc,
        reference_doses=reference,
        files=files,
        warnings=_warnings(qc, fields) + ro.warnings,
    )


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
    `scoring.features.FIELD_FEATURES`.
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
    features = field_readout.configure_features(features, cfg.readout_settings())
    runner = make_runner(model, cfg.device, cfg.precision, cfg.compile)
    field_paths(index, model.spec.channels)  # a missing channel column is a user error before any work
    stage = _sha([model_fingerprint(model), [feature_id(f) for f in features], runner.precision])
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
    model_uri: TileModel | str,
    out_dir: str | Path,
    config: ScoreConfig | str | Path | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
    shard: tuple[int, int] | None = None,
    merge_only: bool = False,
    precision: str | None = None,
    compile: bool | None = None,
) -> ScoreResult | ShardResult:
    """Discover the fields under `roots`, join `platemap`, score them with the model and write `out_dir`.

    `model_uri` is an MLflow model URI (or an already loaded classifier); `batch_size`, `device`,
    `num_workers`, `precision` and `compile` override the config's `inference` section when given.
    `shard` and `merge_only` as in `score_index` (every shard must be given the same arguments).
    """
    from fibroclass.io.index import build_index

    cfg = _resolve_config(config)
    overrides = {
        "batch_size": batch_size,
        "device": device,
        "num_workers": num_workers,
        "precision": precision,
        "compile": compile,
    }
    cfg = ScoreConfig(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    model = load_model(model_uri, trust_pickle=trust_pickle)
    result = build_index(
        [Path(r) for r in roots],
        platemap,
        naming=cfg.naming,
        channel_map=cfg.channels,
        column_map=cfg.platemap_columns or None,
        pattern=cfg.pattern,
        z=cfg.z,
        lenient=True,  # a bad plate-map row or a missing channel file is a warning/flagged field, not an exit
    )
    index = result.index
    run_info = {
        "model_uri": model_uri if isinstance(model_uri, str) else type(model_uri).__name__,
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
    "load_model",
    "merge_parts",
    "score",
    "score_fields",
    "score_index",
]
