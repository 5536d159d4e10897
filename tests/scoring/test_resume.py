"""Resumable, idempotent scoring in-process: parts per plate chunk, reuse, targeted rescoring, plate jobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from resume_helpers import assert_same_outputs, chunk_stamps, plate_layout, snapshot

from fibroclass.errors import FibroclassError
from fibroclass.schema import PLATE, WELL
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.outputs import ScoreResult
from fibroclass.scoring.pipeline import PartsResult, score_index

CFG = ScoreConfig(batch_size=8, chunk_fields=6, device="cpu", report=False)  # report.html: its own tests


@pytest.fixture
def plates(tmp_path, kit):
    layout = plate_layout("P1", 12) + plate_layout("P2", 9) + plate_layout("P3", 10, healthy=9000)
    return kit.make_index(tmp_path / "images", layout, sites=2, size=(32, 33)), layout


def test_rerun_of_finished_run_does_no_work_and_changes_nothing(tmp_path, kit, plates):
    index, _ = plates
    out = tmp_path / "out"
    first = score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    assert first.merged and first.chunks_scored == 4 + 3 + 4 and first.chunks_reused == 0
    assert len(chunk_stamps(out)) == 11
    before = snapshot(out)

    again = score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    assert isinstance(again, ScoreResult) and not again.merged
    assert (again.chunks_scored, again.chunks_reused) == (0, 11)
    assert snapshot(out) == before  # not a byte, not an mtime
    pd.testing.assert_frame_equal(again.fields, first.fields)
    np.testing.assert_array_equal(again.field_embeddings, first.field_embeddings)
    assert {p: q["pass"] for p, q in again.plate_qc.items()} == {
        p: q["pass"] for p, q in first.plate_qc.items()
    }
    pd.testing.assert_frame_equal(again.reference_doses, first.reference_doses)


def test_changed_image_rescored_alone_and_outputs_follow(tmp_path, kit, plates):
    index, layout = plates
    out, ref = tmp_path / "out", tmp_path / "ref"
    score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in chunk_stamps(out)}

    # A treatment field of P2 is re-exported brighter (same path, new content).
    row = index[(index[PLATE] == "P2") & (index[WELL] == "A08")].index[0]
    kit.write_field(tmp_path / "images" / "P2", "P2", "A08", 1, 40000, size=(32, 33))
    res = score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    assert res.merged and (res.chunks_scored, res.chunks_reused) == (1, 10)
    changed = [p for p in chunk_stamps(out) if p.stat().st_mtime_ns != stamps[p]]
    assert len(changed) == 1 and "P2-" in changed[0].parent.name
    assert res.fields.loc[row, "disease_score"] == pytest.approx(kit.expected_score(40000), rel=1e-5)

    score_index(index, kit.ToyClassifier(), ref, CFG, progress=False)  # from scratch
    assert_same_outputs(out, ref)


def test_new_weights_rescore_everything_and_config_changes_only_remerge(tmp_path, kit, plates):
    index, _ = plates
    out = tmp_path / "out"
    score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    model = kit.ToyClassifier()
    with torch.no_grad():
        model.gain.fill_(21.0)
    res = score_index(index, model, out, CFG, progress=False)
    assert (res.chunks_scored, res.chunks_reused) == (11, 0)

    # Control definitions act after the field stage: parts reused, outputs rewritten.
    cfg = ScoreConfig(**{**CFG.__dict__, "z_prime_min": 0.9})
    res = score_index(index, model, out, cfg, progress=False)
    assert res.merged and (res.chunks_scored, res.chunks_reused) == (0, 11)
    assert '"z_prime_min": 0.9' in (out / "plate_qc.json").read_text()


def test_plate_jobs_then_one_explicit_merge_equal_one_run(tmp_path, kit, plates):
    index, _ = plates
    out, ref = tmp_path / "out", tmp_path / "ref"
    with pytest.raises(FibroclassError, match="3 plate\\(s\\) not scored yet"):
        score_index(index, kit.ToyClassifier(), out, CFG, progress=False, merge_only=True)

    first = score_index(index, kit.ToyClassifier(), out, CFG, progress=False, plates=["P2"])
    assert isinstance(first, PartsResult)
    assert first.plates == ["P2"] and first.chunks_scored == 3 and first.other_plates == 2
    assert not (out / "fields.parquet").exists()
    with pytest.raises(FibroclassError, match="P1, P3"):
        score_index(index, kit.ToyClassifier(), out, CFG, progress=False, merge_only=True)

    last = score_index(index, kit.ToyClassifier(), out, CFG, progress=False, plates=["P3", "P1"])
    assert isinstance(last, PartsResult) and last.chunks_scored == 8  # every plate scored: still no merge
    assert not (out / "fields.parquet").exists()
    again = score_index(index, kit.ToyClassifier(), out, CFG, progress=False, plates=["P1"])
    assert (again.chunks_scored, again.chunks_reused) == (0, 4)

    merged = score_index(index, kit.ToyClassifier(), out, CFG, progress=False, merge_only=True)
    assert isinstance(merged, ScoreResult) and merged.merged and merged.chunks_scored == 0
    score_index(index, kit.ToyClassifier(), ref, CFG, progress=False)
    assert_same_outputs(out, ref)
    merged = score_index(index, kit.ToyClassifier(), out, CFG, progress=False, merge_only=True)
    assert isinstance(merged, ScoreResult) and not merged.merged  # already up to date

    with pytest.raises(FibroclassError, match=r"plate\(s\) \['P9'\] not in the field index"):
        score_index(index, kit.ToyClassifier(), out, CFG, progress=False, plates=["P9"])


def test_merge_accepts_parts_scored_at_another_precision(tmp_path, kit, plates):
    """Plate jobs on GPU nodes (bf16) merged on a CPU node (where `auto` means fp32)."""
    index, _ = plates
    out = tmp_path / "out"
    bf16 = ScoreConfig(**{**CFG.__dict__, "precision": "bf16"})
    score_index(index, kit.ToyClassifier(), out, bf16, progress=False, plates=["P1", "P2", "P3"])
    merged = score_index(index, kit.ToyClassifier(), out, CFG, progress=False, merge_only=True)
    assert merged.merged and merged.chunks_reused == 11
    res = score_index(index, kit.ToyClassifier(), out, CFG, progress=False)  # a run rescoring at fp32
    assert (res.chunks_scored, res.chunks_reused) == (11, 0)


def test_interrupted_chunk_write_is_not_trusted(tmp_path, kit, plates):
    index, _ = plates
    out, ref = tmp_path / "out", tmp_path / "ref"
    score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    # As after a kill between writing a chunk's table and its stamp: data present, stamp missing,
    # plus a stale temp file; and a stamp left from other settings.
    stamps = chunk_stamps(out)
    stamps[0].unlink()
    (stamps[0].parent / ".chunk-00000.parquet.abc.tmp").write_bytes(b"partial")
    stamps[5].write_text('{"fingerprint": "stale"}')
    res = score_index(index, kit.ToyClassifier(), out, CFG, progress=False)
    assert (res.chunks_scored, res.chunks_reused) == (2, 9)
    assert not list(out.rglob("*.tmp"))
    score_index(index, kit.ToyClassifier(), ref, CFG, progress=False)
    assert_same_outputs(out, ref)


def test_embeddings_are_a_memory_map_in_index_order(tmp_path, kit, plates):
    index, _ = plates
    shuffled = index.sample(frac=1.0, random_state=0).reset_index(drop=True)  # plates interleaved
    res = score_index(shuffled, kit.ToyClassifier(), tmp_path / "out", CFG, progress=False)
    assert isinstance(res.field_embeddings, np.memmap)
    expected = [kit.expected_score(v) for v in _levels(shuffled, tmp_path)]
    np.testing.assert_allclose(res.fields["disease_score"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.field_embeddings[:, 1], 8000 / 65535, rtol=1e-5)
    assert res.fields[[PLATE, WELL]].equals(shuffled[[PLATE, WELL]])


def _levels(index: pd.DataFrame, tmp_path) -> list[int]:
    import tifffile

    return [int(tifffile.imread(p)[0, 0]) for p in index["path_actin"]]


def test_plate_level_illumination_rescores_the_whole_plate(tmp_path, kit, plates):
    from fibroclass.data.illumination import IlluminationSettings

    index, _ = plates
    model = kit.ToyClassifier()
    model.spec.extra = {"illumination": IlluminationSettings(flatfield=True, normalize=False).to_dict()}
    out = tmp_path / "out"
    score_index(index, model, out, CFG, progress=False)
    # One P3 image changes: the plate's flat-field estimate changes, so all 4 P3 chunks are redone.
    kit.write_field(tmp_path / "images" / "P3", "P3", "A09", 2, 21000, size=(32, 33))
    res = score_index(index, model, out, CFG, progress=False)
    assert (res.chunks_scored, res.chunks_reused) == (4, 7)
