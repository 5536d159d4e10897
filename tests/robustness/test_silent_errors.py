"""No silent errors: a per-field feature that raises flags its field (counted per plate, printed by the CLI), a
QC-metrics failure never lets a field into the well means, and report parts that fail say why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from robust_kit import SITES, field_row, well_row

from fibroclass.cli.score import print_summary
from fibroclass.io.index import build_index
from fibroclass.models.spec import ModelSpec
from fibroclass.schema import PLATE, QC_PASS, QC_REASON
from fibroclass.scoring.config import ReadoutSettings, config_from_dict
from fibroclass.scoring.fields.features import FEATURE_ERROR, NucleiCounts, Organization, QCMetrics
from fibroclass.scoring.fields.qc import REASON_QC_MISSING, plate_field_qc
from fibroclass.scoring.pipeline import score, score_index
from fibroclass.scoring.report.build import write_report

MARK = 65535  # a saturated top-left nuclei pixel marks the fields the failing features trip on


def _marked(img: np.ndarray, channels) -> bool:  # noqa: ANN001
    return bool(img[list(channels).index("nuclei"), 0, 0] >= 1.0)


@dataclass(frozen=True)
class Fragile:
    """A field feature (as a lab would add one) that divides by zero on marked fields."""

    def __call__(self, img: np.ndarray, channels) -> dict[str, float]:  # noqa: ANN001
        if _marked(img, channels):
            raise ZeroDivisionError("no cells to normalize by")
        return {"fragile_mean": float(img.mean())}


@dataclass(frozen=True)
class FragileQC(QCMetrics):
    """The field-QC metrics, failing on marked fields (or on every field with `always`)."""

    always: bool = False

    def __call__(self, img: np.ndarray, channels) -> dict[str, float]:  # noqa: ANN001
        if self.always or _marked(img, channels):
            raise ValueError("sharpness channel has no variance")
        return super().__call__(img, channels)


def _mark(screen, well: str, site: int = 1) -> None:
    path = screen.path(well, site, "nuclei")
    img = tifffile.imread(path)
    img[0, 0] = MARK
    tifffile.imwrite(path, img)


def _score(screen, model, out, features):  # noqa: ANN001, ANN202
    index = build_index(screen.root, screen.platemap, lenient=True).index
    cfg = config_from_dict({"report": {"enabled": False}, "inference": {"device": "cpu", "batch_size": 16}})
    return score_index(index, model, out, cfg, progress=False, field_features=features)


def test_a_feature_that_raises_flags_its_field_and_is_counted(
    screen, clean, model, tmp_path, capsys, assert_rest
):
    _mark(screen, "C01")
    _mark(screen, "D02", 2)
    features = [QCMetrics(), NucleiCounts(), Organization(), Fragile()]
    result = _score(screen, model, tmp_path / "out", features)
    for well, site in (("C01", 1), ("D02", 2)):
        row = field_row(result, well, site)
        assert not row[QC_PASS] and "feature_error: Fragile raised ZeroDivisionError" in row[QC_REASON]
        assert row[FEATURE_ERROR] == "Fragile: ZeroDivisionError: no cells to normalize by"
        assert np.isnan(row["fragile_mean"])
        w = well_row(result, well)
        assert (w["n_fields"], w["n_fields_used"]) == (SITES, SITES - 1)
    assert (result.fields[FEATURE_ERROR] != "").sum() == 2
    qc = json.loads((tmp_path / "out" / "plate_qc.json").read_text())["plates"]["P1"]
    assert qc["n_feature_errors"] == 2 and qc["feature_errors"] == {"Fragile": {"ZeroDivisionError": 2}}
    capsys.readouterr()
    print_summary(result)
    printed = " ".join(capsys.readouterr().out.split())
    assert "FEATURE ERRORS on P1: 2 field(s) flagged (Fragile raised ZeroDivisionError ×2)" in printed
    assert_rest(result, clean, {"C01", "D02"})


def test_a_qc_metrics_failure_never_lets_a_field_into_the_well_means(
    screen, clean, model, tmp_path, assert_rest
):
    _mark(screen, "B02", 2)
    result = _score(screen, model, tmp_path / "out", [FragileQC(), NucleiCounts(), Organization()])
    row = field_row(result, "B02", 2)
    assert np.isfinite(row["disease_score"])  # the model scored it ...
    assert (
        not row[QC_PASS] and "feature_error: FragileQC raised ValueError" in row[QC_REASON]
    )  # ... QC could not
    w = well_row(result, "B02")
    assert w["n_fields_used"] == SITES - 1
    assert w["disease_score"] == pytest.approx(field_row(result, "B02", 1)["disease_score"], rel=1e-6)
    assert_rest(result, clean, {"B02"}, rescue=False)  # B02 is a disease control: rescue % moves


def test_qc_metrics_failing_on_a_whole_plate_fails_every_field(screen, model, tmp_path):
    result = _score(screen, model, tmp_path / "out", [FragileQC(always=True), NucleiCounts()])
    assert not result.fields[QC_PASS].any()
    assert result.fields[QC_REASON].str.contains("feature_error: FragileQC raised ValueError").all()
    assert (result.wells["n_fields_used"] == 0).all() and result.wells["disease_score"].isna().all()
    assert result.plate_qc["P1"]["pass"] is False
    assert result.plate_qc["P1"]["n_feature_errors"] == len(result.fields)


def test_a_scored_field_without_qc_metrics_is_flagged():
    fields = pd.DataFrame({PLATE: "P1", "Metadata_Well": ["A01", "A01", "A02"], QC_PASS: True, QC_REASON: ""})
    metrics = QCMetrics()(np.random.default_rng(0).random((2, 64, 64), dtype=np.float32), ("actin", "nuclei"))
    for col, value in metrics.items():
        fields[col] = [value, np.nan, value]
    out = plate_field_qc(fields, ReadoutSettings())
    assert out[QC_PASS].tolist()[1] is False and out[QC_REASON].iat[1] == REASON_QC_MISSING


class FlatModel(torch.nn.Module):
    """A real classifier without convolutions (a linear model on pixels): Grad-CAM has no map to show."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = ModelSpec(backbone="tiny", crop_size=16, mean=[0.25, 0.1], std=[0.15, 0.1])
        self.head = torch.nn.Linear(2 * 16 * 16, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(-1)


def test_report_parts_that_fail_name_their_error_in_the_report_and_the_cli(screen, tmp_path, capsys):
    torch.manual_seed(0)
    result = score(
        [screen.root], screen.platemap, FlatModel(), tmp_path / "out", device="cpu", progress=False
    )
    assert result.report_problems and result.report_problems[0].startswith("Grad-CAM overlay of ")
    kind = result.report_problems[0].split(" failed: ")[1].split(":")[0]
    assert kind.isidentifier() and kind != "Exception"  # the exception's own type, e.g. FibroclassError
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Report parts that failed" in page and f"failed: {kind}" in page
    capsys.readouterr()
    print_summary(result)
    assert "REPORT PART FAILED: Grad-CAM overlay of" in capsys.readouterr().out

    # the montage: a representative field whose file vanished after scoring
    fields = result.fields.copy()
    for path in fields["path_actin"]:
        Path(path).unlink(missing_ok=True)
    problems: list[str] = []
    write_report(tmp_path / "again", fields, result.wells, result.compounds, result.plate_qc, {}, {}, None,
                 problems=problems)  # fmt: skip
    assert problems and problems[0].startswith("montage of representative fields failed: FibroclassError: ")
    assert (
        "montage of representative fields failed: FibroclassError"
        in (tmp_path / "again" / "report.html").read_text()
    )
