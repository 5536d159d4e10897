"""`--engine ray`: the field stage on a real local Ray cluster gives the local engine's outputs, a killed
read worker or inference actor is retried by Ray, and Ray stays optional."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grimp
import numpy as np
import pandas as pd
import pytest
from resume_helpers import assert_same_outputs, plate_layout, register_tiny_model, score_cmd

from fibroclass.cli.app import main
from fibroclass.data.illumination import ILLUMINATION_FILE, IlluminationSettings, PlateCorrections
from fibroclass.errors import FibroclassError
from fibroclass.schema import QC_REASON
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.fields.features import FIELD_FEATURES
from fibroclass.scoring.fields.parts import plate_slug
from fibroclass.scoring.pipeline import score_index


def _plates(tmp_path: Path, kit) -> tuple[pd.DataFrame, Path, Path]:
    layout = plate_layout("R1", 12) + plate_layout("R2", 10, healthy=9000)
    index = kit.make_index(tmp_path / "images", layout, sites=2, size=(40, 44))
    bad = index.loc[7, "path_actin"]
    Path(bad).write_bytes(b"")  # a field that cannot be read: flagged, the others scored
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    return index, platemap, Path(bad)


def test_cli_engine_ray_equals_local_engine(tmp_path, kit, mlflow_uri, ray_cluster, capsys):
    _, platemap, bad = _plates(tmp_path, kit)
    config = tmp_path / "score.yaml"
    config.write_text("inference:\n  batch_size: 8\n  chunk_fields: 5\n")
    model_uri = register_tiny_model(mlflow_uri)
    args = ("--config", str(config), "--no-mlflow")
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert main(score_cmd(tmp_path / "images", platemap, model_uri, local, *args)[3:]) == 0
    assert (
        main(score_cmd(tmp_path / "images", platemap, model_uri, ray_out, *args, "--engine", "ray")[3:]) == 0
    )
    printed = capsys.readouterr().out
    assert "plate QC" in printed and "compound calls" in printed

    assert_same_outputs(local, ray_out)  # same rows, scores, embeddings, wells, calls, Z′, run.json
    fields = pd.read_parquet(ray_out / "fields.parquet")
    flagged = fields[fields[QC_REASON].str.startswith("unreadable")]
    assert len(flagged) == 1 and str(bad) in flagged[QC_REASON].iloc[0]
    wells = [pd.read_csv(d / "wells.csv") for d in (local, ray_out)]
    np.testing.assert_allclose(wells[0]["rescue_pct"], wells[1]["rescue_pct"], atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(
        wells[0]["viability_pct"], wells[1]["viability_pct"], atol=1e-4, equal_nan=True
    )

    # The same command again: every chunk reused, nothing rescored or rewritten.
    assert (
        main(score_cmd(tmp_path / "images", platemap, model_uri, ray_out, *args, "--engine", "ray")[3:]) == 0
    )
    assert "outputs already up to date" in capsys.readouterr().out


# -- faults: a worker killed mid-run --------------------------------------------------------------------
class KillOnce:
    """Field feature that SIGKILLs the process computing it, the first time only (marker file)."""

    feature_id = "test.KillOnce"

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __call__(self, img: np.ndarray, channels) -> dict[str, float]:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return {"kill_once": 1.0}
        os.kill(os.getpid(), signal.SIGKILL)
        return {}


def _kill_once_model(kit, marker: Path):
    class KillOnceModel(kit.ToyClassifier):
        """The toy classifier whose first forward pass kills its process (the inference actor)."""

        def forward(self, x):  # noqa: ANN001, ANN201
            KillOnce(marker)(np.zeros(1), ())
            return super().forward(x)

    model = KillOnceModel()
    # Per-plate illumination as in training: estimated in one Ray task per plate on the Ray engine.
    model.spec.extra = {"illumination": IlluminationSettings(flatfield=True, normalize=True).to_dict()}
    return model


def test_killed_read_worker_and_inference_actor_are_retried(tmp_path, kit, ray_cluster):
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    index, _, _ = _plates(tmp_path, kit)
    cfg = ScoreConfig(batch_size=8, chunk_fields=5, device="cpu", report=False)
    read_marker, actor_marker = tmp_path / "read.killed", tmp_path / "actor.killed"
    features = [*FIELD_FEATURES, KillOnce(read_marker)]
    res = score_index(
        index, _kill_once_model(kit, actor_marker), tmp_path / "ray", cfg, progress=False,
        field_features=features, engine="ray",
    )  # fmt: skip
    assert read_marker.exists() and actor_marker.exists()  # both processes were killed once
    assert res.merged and (res.fields["kill_once"] == 1.0).sum() == len(index) - 1  # all but the unreadable

    # The reference (markers present: nothing killed) in this process with the local engine.
    local = score_index(
        index, _kill_once_model(kit, actor_marker), tmp_path / "local", cfg, progress=False,
        field_features=features,
    )  # fmt: skip
    assert local.merged
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    for plate in ("R1", "R2"):  # the same estimates (and notes) from per-plate Ray tasks as from one pass
        a, b = (
            PlateCorrections.load(tmp_path / d / "parts" / plate_slug(plate) / ILLUMINATION_FILE)
            for d in ("local", "ray")
        )
        assert a.notes == b.notes and list(a.plates) == list(b.plates) == [plate]
        np.testing.assert_array_equal(a.plates[plate].coef, b.plates[plate].coef)
        np.testing.assert_array_equal(a.plates[plate].high, b.plates[plate].high)


# -- ray stays optional -----------------------------------------------------------------------------------
def test_without_ray_fibroclass_works_and_engine_ray_is_a_one_line_error(tmp_path):
    """A process where `import ray` fails (as when it is not installed): the CLI and the pipeline import,
    and `--engine ray` stops with one line saying what to install."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import fibroclass.scoring.pipeline, fibroclass.scoring.engines\n"
        "from fibroclass.cli.app import main\n"
        f"sys.exit(main(['score', {str(tmp_path)!r}, '--platemap', 'pm.csv', '--model', 'models:/m@a',"
        f" '--out', {str(tmp_path / 'out')!r}, '--engine', 'ray']))\n"
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'fibroclass[ray]'" in lines[0], lines


def test_only_the_ray_engine_imports_ray_and_engine_names_are_checked():
    graph = grimp.build_graph("fibroclass", include_external_packages=True)
    assert graph.find_modules_that_directly_import("ray") == {"fibroclass.scoring.engines.ray_engine"}
    assert graph.find_modules_that_directly_import("fibroclass.scoring.engines.ray_engine") == {
        "fibroclass.scoring.engines"  # lazily, in make_engine("ray")
    }
    from fibroclass.scoring.engines import make_engine

    with pytest.raises(FibroclassError, match="unknown scoring engine 'spark'"):
        make_engine("spark")
    with pytest.raises(FibroclassError, match="--ray-address needs --engine ray"):
        make_engine("local", "auto")
