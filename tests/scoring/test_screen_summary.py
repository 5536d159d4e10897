"""`fibroclass report` over two real score runs of the same plate layout (two noise seeds): one compound
table with per-run and pooled calls, replicate-plate concordance (Spearman, Bland-Altman) checked against
a direct computation, plate QC over time with domain-shift flags when present, links, and screen.html
rendered in headless Chromium."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from browser_kit import (
    chromium,
    console_errors,
    full_page_screenshot,
    remote_resources,
    require_browser,
    screenshot_dir,
    wait_for_plots,
)
from scipy import stats

from fibroclass.cli.app import main
from fibroclass.errors import FibroclassError
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.pipeline import score_index
from fibroclass.scoring.report.screen import run_labels, summarize

HEALTHY, DISEASE = 8000, 30000
DOSES = [10.0 / 3**i for i in range(8)]


def layout(seed: int) -> list[dict]:
    """Controls (5 + 5) and two compounds × 8 doses × 2 on plate SCREEN01; `seed` draws the well noise."""
    rng = np.random.default_rng(seed)
    jitter = lambda: int(rng.normal(0, 500))  # noqa: E731
    wells = []
    for i in range(5):
        wells.append(
            {"plate": "SCREEN01", "well": f"A{i + 1:02d}", "role": "healthy", "level": HEALTHY + jitter()}
        )
        wells.append(
            {"plate": "SCREEN01", "well": f"B{i + 1:02d}", "role": "disease", "level": DISEASE + jitter()}
        )
    for k, name in enumerate(("rescuer", "flat")):
        for j, d in enumerate(DOSES):
            frac = d**1.2 / (d**1.2 + 0.3**1.2) if name == "rescuer" else 0.0
            for rep in range(2):
                wells.append({"plate": "SCREEN01", "well": f"{'CDEF'[2 * k + rep]}{j + 1:02d}", "role": "treatment",
                              "compound": name, "conc": d, "level": int(DISEASE + frac * (HEALTHY - DISEASE)) + jitter()})  # fmt: skip
    return wells


_CACHE: dict[str, list] = {}


@pytest.fixture
def runs(kit, tmp_path_factory) -> list:
    """Two score runs (seed0 with report.html, seed1 without), made once for the module."""
    if "runs" in _CACHE:
        return _CACHE["runs"]
    tmp = tmp_path_factory.mktemp("screen")
    out = []
    for seed in (0, 1):
        index = kit.make_index(tmp / f"img{seed}", layout(seed), sites=1, size=(24, 24))
        cfg = ScoreConfig(batch_size=16, device="cpu", report=seed == 0, report_gradcam=False)
        score_index(index, kit.ToyClassifier(), tmp / f"seed{seed}", cfg, progress=False)
        out.append(tmp / f"seed{seed}")
    # a plate-QC field another step may add: shown when present
    qc_path = out[1] / "plate_qc.json"
    qc = json.loads(qc_path.read_text())
    qc["plates"]["SCREEN01"]["domain_shift"] = {"score": 0.8, "threshold": 0.5, "out_of_distribution": True}
    qc_path.write_text(json.dumps(qc))
    _CACHE["runs"] = out
    return out


def test_compounds_concordance_and_plates(runs):
    screen = summarize(runs)
    assert [r.label for r in screen.runs] == ["seed0", "seed1"]
    comp = screen.compounds.set_index("compound")
    assert comp.loc["rescuer", "overall_call"] == "hit" and comp.loc["rescuer", "n_hit_runs"] == 2
    assert comp.loc["rescuer", "call_seed0"] == "hit" and comp.loc["rescuer", "call_seed1"] == "hit"
    assert bool(comp.loc["rescuer", "calls_agree"]) and 0.1 < comp.loc["rescuer", "ec50_uM"] < 1.0
    assert comp.loc["flat", "overall_call"] != "hit"
    # concordance against a direct computation from the two wells.csv files
    means = []
    for run in runs:
        w = pd.read_csv(run / "wells.csv")
        w = w[w["role"] == "treatment"]
        means.append(w.groupby(["compound", "concentration_uM"])["rescue_pct"].mean())
    both = pd.concat(means, axis=1, keys=["a", "b"]).dropna()
    pair = screen.pairs.iloc[0]
    assert (pair["unit_a"], pair["unit_b"]) == ("seed0/SCREEN01", "seed1/SCREEN01") and pair["n_points"] == 16
    assert pair["spearman_rho"] == pytest.approx(stats.spearmanr(both["a"], both["b"]).statistic)
    d = both["a"] - both["b"]
    assert pair["bias_pct"] == pytest.approx(d.mean()) and pair["sd_diff_pct"] == pytest.approx(d.std(ddof=1))
    assert pair["loa_high_pct"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert pair["spearman_rho"] > 0.6 and pair["pearson_r"] > 0.9  # replicate plates of one layout agree
    plates = screen.plates.set_index("unit")
    assert bool(plates.loc["seed1/SCREEN01", "out_of_distribution"]) and np.isnan(
        plates.loc["seed0/SCREEN01", "domain_shift_score"]
    )


def test_cli_writes_page_and_tables(runs, tmp_path, capsys):
    out = tmp_path / "summary" / "screen.html"
    rc = main(["report", str(runs[0]), str(runs[1]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "seed0/SCREEN01 vs seed1/SCREEN01" in printed and "Spearman" in printed
    for name in (
        "screen_compounds.csv",
        "screen_concordance.csv",
        "screen_concordance_points.csv",
        "screen_plates.csv",
    ):
        assert (out.parent / name).is_file(), name
    assert set(pd.read_csv(out.parent / "screen_compounds.csv")["compound"]) == {"rescuer", "flat"}
    html = out.read_text()
    for sid in ("runs", "compounds", "concordance", "plates"):
        assert f'<section id="{sid}">' in html
    assert 'href="../../screen0/seed0/report.html"' in html or "/seed0/report.html" in html
    assert "no report.html" in html  # seed1 was scored without a report
    assert "out of distribution" in html and "fc-bland-altman" in html


def test_bad_run_folders_are_one_line_errors(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["report", str(runs[0]), str(tmp_path / "empty"), "--out", str(tmp_path / "s.html")])
    err = capsys.readouterr().err
    assert (
        rc == 1 and "is not a fibroclass score run: it lacks wells.csv, compounds.csv, plate_qc.json" in err
    )
    assert err.count("\n") == 1
    with pytest.raises(FibroclassError, match="--label given 1 time"):
        main(
            [
                "--debug",
                "report",
                str(runs[0]),
                str(runs[1]),
                "--label",
                "x",
                "--out",
                str(tmp_path / "s.html"),
            ]
        )
    assert run_labels([tmp_path / "a" / "score", tmp_path / "b" / "score"]) == ["a/score", "b/score"]


def test_screen_page_renders_in_chromium(runs, tmp_path):
    require_browser()
    out = tmp_path / "screen.html"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    with chromium() as driver:
        driver.get(out.as_uri())
        drawn, total = wait_for_plots(driver)
        assert total == 3 and drawn == total
        assert console_errors(driver) == [] and remote_resources(driver) == []
        full_page_screenshot(driver, screenshot_dir(tmp_path) / "screen.png")


def test_report_help_has_an_example():
    from typer.testing import CliRunner

    from fibroclass.cli.app import app

    result = CliRunner().invoke(app, ["report", "--help"])
    assert result.exit_code == 0 and "Example: fibroclass report scores/day1 scores/day2" in result.output
