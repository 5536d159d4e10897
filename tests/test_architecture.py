"""The house rules a newcomer relies on: one-way imports, small modules, shipped configs found by name."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from fibroclass import __version__
from fibroclass.cli.app import main
from fibroclass.configs import packaged_dir, resolve_config, shipped
from fibroclass.errors import FibroclassError
from fibroclass.scoring.config import SCORE_OPTIONS, ScoreConfig, load_score_config
from fibroclass.workflows.train import resolve_config_args

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "fibroclass"
MAX_LINES = 450


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_no_import_cycles_lazy_imports_included():
    graph = grimp.build_graph("fibroclass", include_external_packages=False)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "\n".join(cycles[:10])


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_packaged_configs_are_the_repository_configs():
    for kind in ("train", "score"):
        top = sorted(p.name for p in (REPO / "configs" / kind).glob("*.yaml"))
        assert top == sorted(f"{n}.yaml" for n in shipped(kind))
        match, mismatch, errors = filecmp.cmpfiles(REPO / "configs" / kind, packaged_dir(kind), top, shallow=False)
        assert not mismatch and not errors, f"configs/{kind} differs from src/fibroclass/configs/{kind}: {mismatch}"


def test_configs_resolve_by_name_or_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout: the README's paths fall back to the shipped files
    assert resolve_config("train", "gpu_resnet18") == packaged_dir("train") / "gpu_resnet18.yaml"
    assert resolve_config("score", "default.yaml") == packaged_dir("score") / "default.yaml"
    assert resolve_config("train", "configs/train/default.yaml") == packaged_dir("train") / "default.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("qc:\n  z_prime_min: 0.3\n")
    assert resolve_config("score", own) == own and load_score_config(own).z_prime_min == 0.3
    assert load_score_config("default") == load_score_config(REPO / "configs" / "score" / "default.yaml")
    with pytest.raises(FibroclassError, match=r"score config nope not found.*default"):
        resolve_config("score", "nope")
    args = resolve_config_args(["--config", "default", "--config=gpu_resnet18", "--data.split", "s"])
    assert args == [
        "--config",
        str(packaged_dir("train") / "default.yaml"),
        f"--config={packaged_dir('train') / 'gpu_resnet18.yaml'}",
        "--data.split",
        "s",
    ]


def test_version_flag(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fibroclass {__version__}"


def test_score_options_are_declared_once_against_the_config(capsys):
    assert main(["score", "--help"]) == 0
    text = capsys.readouterr().out
    for flag, (attr, _) in SCORE_OPTIONS.items():
        assert flag.split("/")[0] in text
        assert hasattr(ScoreConfig(), attr)
    cfg = ScoreConfig().with_overrides(batch_size=8, device=None, compile=True)
    assert (cfg.batch_size, cfg.device, cfg.compile) == (8, "auto", True)
    with pytest.raises(FibroclassError, match=r"unknown key\(s\) \['batchsize'\] in score config overrides"):
        ScoreConfig().with_overrides(batchsize=8)
    with pytest.raises(FibroclassError, match="batch_size must be >= 1"):
        ScoreConfig().with_overrides(batch_size=0)


def test_readout_sections_parse_strictly_with_one_helper():
    with pytest.raises(FibroclassError, match=r"unknown key\(s\) \['blur_z'\] in config section 'field_qc'"):
        ScoreConfig(readout={"field_qc": {"blur_z": 1}})
    with pytest.raises(FibroclassError, match=r"config section 'calls'"):
        ScoreConfig(readout={"calls": {"hit_rescue_pct": 50, "hit": 1}})
    cfg = ScoreConfig(readout={"offtarget": {"z_min": 4.0}})
    assert cfg.readout.calls.offtarget_z_min == 4.0  # calls follow offtarget unless told otherwise
    assert ScoreConfig(readout=cfg.readout.to_dict()) == cfg
