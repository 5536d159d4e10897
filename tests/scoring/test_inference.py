"""Field inference on real TIFFs: tiling coverage, batching across fields, temperature, unreadable fields."""

from __future__ import annotations

import numpy as np
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.schema import DISEASE_SCORE, P_DISEASE, QC_PASS, QC_REASON, path_col
from fibroclass.scoring.fields.inference import score_fields


def test_tiles_cover_whole_field_not_multiple_of_crop(tmp_path, kit):
    # 40 x 37 field, 16 px crop: 3 x 3 tiles, the last row/column edge-aligned. One bright pixel in
    # the bottom-right corner lies in exactly one tile, so with logit = tile max the score is 1/9;
    # a tiling that cropped the remainder away would give 0.
    actin = np.zeros((40, 37), np.uint16)
    actin[-1, -1] = 65535
    paths = kit.write_field(tmp_path, "P1", "A01", 1, actin)
    index = kit.make_index(
        tmp_path / "other", [{"plate": "P1", "well": "A02", "role": "disease", "level": 0}], 1
    )
    index.loc[0, list(paths)] = list(paths.values())
    fields, emb = score_fields(index, kit.ToyClassifier(mode="max"), progress=False)
    assert fields[DISEASE_SCORE].iloc[0] == pytest.approx(1 / 9)
    assert emb.shape == (1, 2)


def test_batching_across_fields_gives_same_scores(tmp_path, kit):
    wells = [{"plate": "P1", "well": f"A{i:02d}", "role": "disease", "level": 3000 * i} for i in range(1, 6)]
    index = kit.make_index(tmp_path, wells, sites=2)
    model = kit.ToyClassifier()
    ref, ref_emb = score_fields(index, model, batch_size=64, progress=False)
    for bs in (1, 4, 7):
        got, emb = score_fields(index, model, batch_size=bs, progress=False)
        np.testing.assert_allclose(got[DISEASE_SCORE], ref[DISEASE_SCORE], rtol=1e-6)
        np.testing.assert_allclose(emb, ref_emb, rtol=1e-6)
    expected = [kit.expected_score(w["level"]) for w in wells for _ in range(2)]
    np.testing.assert_allclose(ref[DISEASE_SCORE], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref_emb[:, 1], 8000 / 65535, rtol=1e-6)


def test_dataloader_workers_match_in_process_reading(tmp_path, kit):
    wells = [{"plate": "P1", "well": f"A{i:02d}", "role": "disease", "level": 5000 * i} for i in range(1, 4)]
    index = kit.make_index(tmp_path, wells, sites=2)
    model = kit.ToyClassifier()
    a, _ = score_fields(index, model, batch_size=5, progress=False, num_workers=0)
    b, _ = score_fields(index, model, batch_size=5, progress=False, num_workers=2)
    np.testing.assert_allclose(a[DISEASE_SCORE], b[DISEASE_SCORE])


def test_temperature_scales_score_and_probability(tmp_path, kit):
    index = kit.make_index(tmp_path, [{"plate": "P1", "well": "A01", "role": "disease", "level": 30000}], 1)
    model = kit.ToyClassifier(temperature=2.0)
    fields, _ = score_fields(index, model, progress=False)
    s = kit.expected_score(30000, model)
    assert fields[DISEASE_SCORE].iloc[0] == pytest.approx(s, rel=1e-5)
    assert fields[P_DISEASE].iloc[0] == pytest.approx(1 / (1 + np.exp(-s)), rel=1e-5)


def test_unreadable_fields_are_flagged_not_fatal(tmp_path, kit):
    wells = [{"plate": "P1", "well": f"A{i:02d}", "role": "disease", "level": 20000} for i in range(1, 4)]
    index = kit.make_index(tmp_path, wells, sites=1)
    truncated = index.loc[0, path_col("actin")]
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 3])  # truncated TIFF on disk
    kit.write_field(tmp_path / "odd", "P1", "A02", 1, 20000, size=(30, 30))  # nuclei of another shape
    index.loc[1, path_col("nuclei")] = str(tmp_path / "odd" / "P1_A02_s1_w2.tif")
    fields, emb = score_fields(index, kit.ToyClassifier(), batch_size=2, progress=False)
    assert fields[QC_PASS].tolist() == [False, False, True]
    assert fields[QC_REASON].iloc[0].startswith("unreadable: ") and truncated in fields[QC_REASON].iloc[0]
    assert "shape" in fields[QC_REASON].iloc[1]
    assert fields[DISEASE_SCORE].iloc[:2].isna().all() and np.isnan(emb[:2]).all()
    assert fields[DISEASE_SCORE].iloc[2] == pytest.approx(kit.expected_score(20000), rel=1e-5)
    assert fields[QC_REASON].iloc[2] == ""


def test_missing_channel_column_is_a_user_error(tmp_path, kit):
    index = kit.make_index(tmp_path, [{"plate": "P1", "well": "A01", "role": "disease", "level": 1}], 1)
    with pytest.raises(FibroclassError, match="path_nuclei"):
        score_fields(index.drop(columns=[path_col("nuclei")]), kit.ToyClassifier(), progress=False)


def test_real_classifier_scores_equal_mean_tile_logits(tmp_path, kit):
    import torch

    from fibroclass.data.preprocess import tile_field
    from fibroclass.io.images import read_field
    from fibroclass.models.classifier import FibroClassifier
    from fibroclass.models.spec import ModelSpec

    torch.manual_seed(0)
    model = FibroClassifier(
        ModelSpec(backbone="tiny", crop_size=16, mean=[0.2, 0.1], std=[0.1, 0.05], temperature=1.5)
    ).eval()
    rng = np.random.default_rng(0)
    wells = [{"plate": "P1", "well": f"A{i:02d}", "role": "disease", "level": 1000} for i in (1, 2)]
    index = kit.make_index(tmp_path, wells, sites=1)
    kit.write_field(tmp_path / "P1", "P1", "A02", 1, rng.integers(0, 40000, (40, 37)).astype(np.uint16))
    fields, emb = score_fields(index, model, batch_size=5, progress=False)
    for i, row in fields.iterrows():
        tiles = torch.from_numpy(tile_field(read_field([row[path_col(c)] for c in ("actin", "nuclei")]), 16))
        with torch.inference_mode():
            expected = model(tiles).mean().item() / 1.5
            expected_emb = model.embed(tiles).mean(0).numpy()
        assert fields[DISEASE_SCORE].iloc[i] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        np.testing.assert_allclose(emb[i], expected_emb, rtol=1e-4, atol=1e-6)
    assert emb.shape == (2, model.spec.embedding_dim)
