"""Merge: finished chunks of OUT/parts/ → per-plate field QC and well aggregation → cross-plate steps
(`scoring.finish`) → the run's output files (written atomically, skipped when already up to date).

Plates are read back one at a time in index order, so memory stays flat and a sharded run merges to the same
files as a single process; `load_outputs` reads a finished run back without recomputing anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fibroclass import __version__
from fibroclass.errors import FibroclassError
from fibroclass.io.assays import files_fingerprint, read_assays
from fibroclass.schema import FIELD_KEYS, FLAGS, QC_PASS
from fibroclass.scoring.compounds.tables import reference_dose_table
from fibroclass.scoring.config import ScoreConfig, gate_scale
from fibroclass.scoring.fields.inference import (
    TileModel,
)
from fibroclass.scoring.fields.parts import PARTS_DIR, Chunk, sha_of
from fibroclass.scoring.fields.qc import plate_field_qc
from fibroclass.scoring.finish import finish
from fibroclass.scoring.outputs import FILES, ScoreResult, field_table, well_table, write_outputs
from fibroclass.scoring.wells.aggregate import aggregate_wells, well_features
from fibroclass.scoring.wells.plate_qc import plate_qc
from fibroclass.scoring.wells.readout import rescue_readout

MERGE_STAMP = "merged.json"


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


def _plate_fields(fields: pd.DataFrame, cfg: ScoreConfig) -> pd.DataFrame:
    """Per-plate field steps on one plate's field table (feature columns already present).

    Field QC (scoring.fields.qc.plate_field_qc: blur against the plate's own fields, empty against the well's
    other fields, debris) refines qc_pass / qc_reason here, so flagged fields never reach a well.
    """
    return plate_field_qc(fields, cfg.readout)


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


def load_outputs(out: str | Path, cfg: ScoreConfig | None = None) -> ScoreResult:
    """The result of a finished run, read back from its files (nothing recomputed or rewritten); without
    `cfg`, the config recorded in its run.json."""
    out = Path(out)
    if cfg is None:
        cfg = ScoreConfig(**json.loads((out / "run.json").read_text())["config"])
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
    """Merge complete chunks into the run's output files (skipped when they are already up to date); the
    caller holds the output folder (`scoring.runlock.writing`)."""
    out = Path(out_dir)
    parts_dir = out / PARTS_DIR
    info_key = {k: v for k, v in (run_info or {}).items() if k != "created"}
    index_hash = hashlib.sha256(index.to_csv(index=False).encode()).hexdigest()
    merge_fp = sha_of([__version__, [c.fingerprint for c in chunks], cfg.to_dict(), index_hash, info_key])
    if cfg.assays:  # readout files: their content, not only their paths
        merge_fp = sha_of([merge_fp, files_fingerprint(cfg.assays)])
    stamp = parts_dir / MERGE_STAMP
    try:
        up_to_date = json.loads(stamp.read_text()).get("fingerprint") == merge_fp
    except (OSError, ValueError):
        up_to_date = False
    wanted = (*FILES, "report.html") if cfg.report else FILES
    if up_to_date and all((out / name).is_file() for name in wanted):
        return load_outputs(out, cfg)
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
            wells_p = well_features(fields_p, wells_p)
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
    # rescue meters fitted on the controls, rescue_pct on the primary one (scoring.wells.readout)
    wells, controls, meter = rescue_readout(wells, well_emb, cfg.controls, cfg.readout.rescue)
    qc = plate_qc(
        fields, controls, cfg.z_prime_min, gate_scale(cfg.z_prime_scale, meter["meter"]), meter["meter"]
    )
    # off-target, organization agreement, flags, 4PL fits and calls (scoring.finish)
    assays = read_assays(cfg.assays) if cfg.assays else None
    ro = finish(wells, well_emb, qc, cfg.controls, cfg.compounds, cfg.readout, assays)
    wells, compounds = ro.wells, ro.compounds
    for plate, entry in ro.organization.items():
        qc[plate]["organization"] = entry
    for plate, entry in ro.assays.items():
        qc[plate]["assays"] = entry
    reference = reference_dose_table(wells, cfg.reference, cfg.compounds)

    info = {
        "fibroclass_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_spec": model.spec.to_dict(),
        "config": cfg.to_dict(),
        "n_fields": len(fields),
        "n_wells": len(wells),
        "plates": sorted(qc),
        "rescue_meter": meter,
        **(
            {"assay_files": dict(zip(cfg.assays, files_fingerprint(cfg.assays), strict=True))}
            if cfg.assays
            else {}
        ),
        **(run_info or {}),
    }
    files = write_outputs(
        out, fields, field_emb_file, wells, well_emb, compounds, qc, cfg.z_prime_min, info, ro.activity
    )
    report_problems: list[str] = []  # report parts that failed (montage, Grad-CAM), with the error type
    if cfg.report:
        from fibroclass.scoring.report.build import write_report  # matplotlib: only when reporting

        files["report.html"] = write_report(
            out, fields, wells, compounds, qc, ro.fits, ro.organization, model, cfg.report_gradcam,
            problems=report_problems, activity=ro.activity,
            well_embeddings=well_emb, assay_specs=ro.assay_specs, assay_fits=ro.assay_fits,
            thumbnails=cfg.report_thumbnails, viability_min_pct=cfg.readout.calls.viability_min_pct,
        )  # fmt: skip
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
        warnings=_warnings(qc, fields) + ro.warnings + [f"report: {p}" for p in report_problems],
        report_problems=report_problems,
    )
