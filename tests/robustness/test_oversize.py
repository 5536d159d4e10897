"""Files whose headers claim more than a field can be: flagged `oversize` from the header alone, never decoded,
memory bounded; the rest of the plate scores as if nothing had happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import tifffile
from robust_kit import SIZE, field_row, run, save_model_folder

from fibroclass.io.headers import MEGAPIXELS
from fibroclass.io.images import OversizeError, plane_info, read_raw
from fibroclass.schema import QC_PASS, QC_REASON, SITE, WELL

GB = 1024**3


def claim_60000_square(path) -> None:
    """A sparse TIFF whose header claims 60000 × 60000 uint16 pixels (7.2 GB decoded; a few kB on disk)."""
    path.unlink()
    tifffile.imwrite(path, shape=(60000, 60000), dtype="uint16")


def claim_100000_pages(path) -> None:
    """An ImageJ stack with one IFD whose description claims 100000 planes (as ImageJ writes stacks > 4 GB)."""
    path.unlink()
    tifffile.imwrite(
        path, shape=(100000, 256, 256), dtype="uint16", imagej=True, truncate=True, metadata={"axes": "ZYX"}
    )


def _reason(result, well: str, site: int = 1) -> str:
    row = field_row(result, well, site)
    assert not row[QC_PASS] and np.isnan(row["disease_score"])
    return str(row[QC_REASON])


def test_headers_are_read_without_decoding(tmp_path):
    square, stack = tmp_path / "square.tif", tmp_path / "stack.tif"
    for path, write in ((square, claim_60000_square), (stack, claim_100000_pages)):
        path.write_bytes(b"")
        write(path)
        assert os.stat(path).st_blocks * 512 < 1024**2  # sparse: nothing but a header on disk
    (info,) = plane_info(square)
    assert (info.shape, info.dtype, info.pages, info.planes) == ((60000, 60000), "uint16", 1, 1)
    with pytest.raises(OversizeError, match=r"oversize: image .*square.tif claims 60000 × 60000 px"):
        read_raw(square)
    (info,) = plane_info(stack)
    assert info.planes == 100000 and info.pages == 1
    with pytest.raises(OversizeError, match="claims 100000 planes"):
        read_raw(stack)
    with pytest.raises(OversizeError, match="claims 100000 planes to project"):
        read_raw(f"{stack}#z=max")
    assert read_raw(f"{stack}#z=3").shape == (256, 256)  # one plane of it is an ordinary plane


def test_oversize_files_are_flagged_never_decoded_and_the_rest_scores(
    screen, clean, model, tmp_path, assert_rest, monkeypatch
):
    square, stack = screen.path("C01", 1, "actin"), screen.path("D02", 2, "nuclei")
    claim_60000_square(square)
    claim_100000_pages(stack)
    decoded: list[str] = []  # every file any pixel is decoded from, in this process (num_workers=0)
    page_asarray = tifffile.TiffPage.asarray

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN202
        decoded.append(str(self.parent.filehandle.path))
        return page_asarray(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", spy)
    result = run(screen, model, tmp_path / "out")
    assert decoded and not {str(square), str(stack)} & set(decoded)
    assert _reason(result, "C01").startswith(f"oversize: image {square} claims 60000 × 60000 px")
    assert _reason(result, "D02", 2).startswith(f"oversize: image {stack} claims 100000 planes")
    assert field_row(result, "C01")[MEGAPIXELS] == pytest.approx(3600.0)
    assert field_row(result, "A01")[MEGAPIXELS] == pytest.approx(SIZE * SIZE / 1e6)
    assert any("oversize" in w and str(square) in w for w in result.warnings)
    assert_rest(result, clean, {"C01", "D02"})


def test_field_wildly_larger_than_its_plate_is_oversize(screen, clean, model, tmp_path, assert_rest):
    big = screen.path("C02", 2, "actin")
    tifffile.imwrite(big, np.full((SIZE * 8, SIZE * 8), 9000, np.uint16))  # 64x the area, under the cap
    result = run(screen, model, tmp_path / "out")
    reason = _reason(result, "C02", 2)
    assert reason.startswith(f"oversize: image {big} claims 256 × 256 px") and "64× the area" in reason
    assert f"({SIZE} × {SIZE} px)" in reason
    assert_rest(result, clean, {"C02"})


def test_the_cap_is_a_score_config_key(screen, model, tmp_path):
    from fibroclass.scoring.config import config_from_dict
    from fibroclass.scoring.pipeline import score

    cfg = config_from_dict({"discovery": {"max_megapixels": 0.0005}, "report": {"enabled": False}})
    result = score(
        [screen.root], screen.platemap, model, tmp_path / "out", config=cfg, device="cpu", progress=False
    )
    reasons = result.fields[QC_REASON].astype(str)
    assert reasons.str.contains(r"above the 0.0005 Mpx cap \(discovery.max_megapixels\)").all()


@pytest.mark.slow
def test_peak_rss_of_scoring_with_oversize_files_stays_under_4_gb(screen, model, tmp_path):
    """`fibroclass score` with two reader workers, in a child process whose peak RSS (ru_maxrss of it and
    its waited-for workers, RUSAGE_CHILDREN) is measured by a wrapper process."""
    claim_60000_square(screen.path("C01", 1, "actin"))
    claim_60000_square(
        screen.path("A02", 2, "nuclei")
    )  # a control field, sampled for bit depth + illumination
    claim_100000_pages(screen.path("D02", 2, "nuclei"))
    model_dir = save_model_folder(model, tmp_path / "model")
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "fibroclass.cli",
        "score",
        str(screen.root),
        "--platemap",
        str(screen.platemap),
    ]
    argv += ["--model", str(model_dir), "--out", str(out), "--device", "cpu", "--num-workers", "2"]
    argv += ["--no-progress", "--no-mlflow"]
    wrapper = textwrap.dedent(
        f"""
        import json, resource, subprocess, sys
        rc = subprocess.run({argv!r}, capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
        print(json.dumps({{"rc": rc.returncode, "peak": peak, "tail": (rc.stdout + rc.stderr)[-3000:]}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, report["tail"]
    print(f"peak RSS of `fibroclass score` (2 reader workers): {report['peak'] / GB:.2f} GB")
    assert report["peak"] < 4 * GB
    fields = pd.read_parquet(out / "fields.parquet").set_index([WELL, SITE])
    for key in (("C01", 1), ("A02", 2), ("D02", 2)):
        assert str(fields.loc[key, QC_REASON]).startswith("oversize: "), key
    assert fields[QC_PASS].sum() == len(fields) - 3
