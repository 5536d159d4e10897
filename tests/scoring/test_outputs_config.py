"""Output writing (atomic, strict JSON, contract columns) and the shipped score config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.scoring.config import ScoreConfig, config_from_dict, load_score_config
from fibroclass.scoring.outputs import atomic_write, json_safe

REPO = Path(__file__).resolve().parents[2]


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "wells.csv"
    atomic_write(target, lambda tmp: tmp.write_text("old"))

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["wells.csv"]


def test_json_safe_gives_strict_json():
    obj = {
        "z_prime": float("nan"),
        "ssmd": np.float64(np.inf),
        "n": np.int64(3),
        "r": ["a"],
        "ok": np.bool_(True),
    }
    text = json.dumps(json_safe(obj), allow_nan=False)
    assert json.loads(text) == {"z_prime": None, "ssmd": None, "n": 3, "r": ["a"], "ok": True}


def test_shipped_default_config_parses_to_the_defaults():
    cfg = load_score_config(REPO / "configs" / "score" / "default.yaml")
    assert cfg == ScoreConfig()
    assert cfg.controls == {"healthy": "role == 'healthy'", "disease": "role == 'disease'"}
    assert cfg.channels["w1"] == "actin" and cfg.channels["w2"] == "nuclei" and cfg.z_prime_min == 0.5
    # the queries run on a plate-map-shaped table
    wells = pd.DataFrame({"role": ["healthy", "disease", "treatment"], "concentration_uM": [0, 0, 1.0]})
    for q in (*cfg.controls.values(), cfg.reference, cfg.compounds):
        wells.query(q)


def test_config_overrides_and_errors(tmp_path):
    cfg = config_from_dict({"qc": {"z_prime_min": "0.3"}, "inference": {"batch_size": 8}})
    assert cfg.z_prime_min == 0.3 and cfg.batch_size == 8 and cfg.device == "auto"
    with pytest.raises(FibroclassError, match="qc.zprime"):
        config_from_dict({"qc": {"zprime": 1}})
    with pytest.raises(FibroclassError, match="disease"):
        config_from_dict({"controls": {"healthy": "role == 'healthy'"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("controls: [unclosed")
    with pytest.raises(FibroclassError, match="bad.yaml"):
        load_score_config(bad)
    with pytest.raises(FibroclassError, match="not found"):
        load_score_config(tmp_path / "missing.yaml")
