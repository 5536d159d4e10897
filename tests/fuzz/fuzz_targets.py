"""Fuzz targets: hypothesis strategies for plate maps, file names and pixel data, and the property each input
must satisfy: the public entry point either returns output meeting its contract or raises FibroclassError
(a one-line user error). Any other exception is an unhandled crash.

Shared by `tests/fuzz/test_fuzz.py` (pytest, small and large runs) and `scripts/fuzz.py` (recorded runs).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from fuzz_record import NEVER_UNREADABLE, FuzzRecord
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fibroclass.errors import FibroclassError
from fibroclass.io.images import read_field, read_raw
from fibroclass.io.index import build_index
from fibroclass.io.platemap import read_platemap
from fibroclass.schema import CONC, PLATE, ROLE, ROLES, SITE, SKIP_REASON, WELL, path_col
from fibroclass.scoring.fields.inference import FieldTiles

CANONICAL_WELL = re.compile(r"^(?:[A-Z]|A[A-F])\d{2}$")

# -- plate maps -------------------------------------------------------------------------------------------
WELL_TEXT = st.one_of(
    st.sampled_from(
        ["A1", "a01", "A001", " B2 ", "P24", "AF48", "AA1", "H12", "A0", "Z99", "AG1", "1A", "A", ""]
    ),
    st.from_regex(r"[A-Za-z]{1,3}[0-9]{0,4}", fullmatch=True),
    st.text(max_size=6),
)
ROLE_TEXT = st.one_of(
    st.sampled_from([*ROLES, "Healthy", " DISEASE ", "ctrl", "", "treatment "]), st.text(max_size=8)
)
CONC_TEXT = st.one_of(
    st.sampled_from(["0", "1", "0.5", "1e-3", "", "-1", "nan", "inf", "-inf", "1,5", "10 uM", " 3 "]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=5),
)
CELL = st.text(max_size=12)
HEADER = st.sampled_from(
    [
        "plate",
        "well",
        "role",
        "compound",
        "concentration_uM",
        "donor",
        "genotype",
        "Well",
        "ROLE",
        "batch",
        "",
        "well ",
    ]
)


@st.composite
def platemap_texts(draw: st.DrawFn) -> str:
    """A plate-map CSV: usually well-formed CSV with fuzzed cells and headers, sometimes raw text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=300))
    required = ["well", "role", "compound", "concentration_uM"]
    extra = draw(st.lists(HEADER, max_size=3))
    header = draw(st.permutations(required + (["plate"] if draw(st.booleans()) else []) + extra))
    if draw(st.integers(0, 5)) == 0:
        header = header[: draw(st.integers(0, len(header)))]  # a required column missing
    cells = {
        "well": WELL_TEXT,
        "role": ROLE_TEXT,
        "concentration_uM": CONC_TEXT,
        "plate": st.sampled_from(["P1", "P2", "", "p1"]),
    }
    if draw(st.integers(0, 2)) == 0:  # a plausible map (then mutated below): exercises the accepting path
        cells |= {
            "well": st.sampled_from(["A01", "A1", "B02", "H12", "C3"]),
            "role": st.sampled_from(ROLES),
            "concentration_uM": st.sampled_from(["0", "1", "0.5"]),
        }
    n_rows = draw(st.integers(0, 8))
    rows = [[draw(cells.get(h.strip(), CELL)) for h in header] for _ in range(n_rows)]
    if rows and draw(st.booleans()):
        rows.append(list(draw(st.sampled_from(rows))))  # a duplicated row
    if rows and draw(st.integers(0, 4)) == 0:
        rows[0] = rows[0][: draw(st.integers(0, len(rows[0])))]  # a ragged row
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def check_platemap(text: str, lenient: bool) -> FibroclassError | None:
    """`read_platemap` returns a valid table or raises FibroclassError naming the file (returned)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plate map.csv"
        path.write_text(text, encoding="utf-8")
        problems: list[str] | None = [] if lenient else None
        try:
            pm = read_platemap(path, problems=problems)
        except FibroclassError as exc:
            assert str(path) in str(exc) or "invalid well name" in str(exc), str(exc)
            return exc
        assert len(pm) > 0
        assert pm["well"].map(lambda w: bool(CANONICAL_WELL.match(w))).all()
        assert set(pm[ROLE]) <= set(ROLES)
        assert pm[CONC].map(lambda c: math.isfinite(c) and c >= 0).all()
        keys = [c for c in ("plate", "well") if c in pm.columns]
        assert not pm.duplicated(keys).any()
        for p in problems or []:
            assert str(path) in p, p
    return None


# -- file names ---------------------------------------------------------------------------------------------
NAME_PART = st.sampled_from(["P1", "P2", "plate 3", "Pl_ä", "P1_run2", ""])
WELL_PART = st.sampled_from(["A01", "A1", "B2", "h12", "AF48", "A00", "Z99", "AG01", "A123", ""])
SITE_PART = st.sampled_from(["_s1", "_s2", "_s0", "_s", "", "_s01"])
CHANNEL_PART = st.sampled_from(["_w1", "_w2", "_w3", "_w0", "_W1", "_w10", "", "_w"])
SUFFIX = st.sampled_from(
    [".tif", ".TIF", ".tiff", ".png", "_thumb.tif", ".tif.tmp", "2C9A3E4F-1B2C-4D5E-8F90-A1B2C3D4E5F6.tif"]
)
RAW_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=40
).filter(lambda s: s not in (".", ".."))


@st.composite
def file_names(draw: st.DrawFn) -> list[tuple[str, str]]:
    """(subfolder, file name) pairs: a few complete ImageXpress fields (both channels), then ImageXpress-like
    names with mutations and some arbitrary names."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        folder, plate = draw(st.sampled_from([("", "P1"), ("P1", "P1"), ("P2", "P2"), ("nested/P1", "P1")]))
        stem = f"{plate}_{draw(st.sampled_from(['A01', 'B02', 'H12', 'B2']))}_s{draw(st.integers(1, 2))}"
        out += [(folder, f"{stem}_w1.tif"), (folder, f"{stem}_w2.tif")]
    for _ in range(draw(st.integers(1, 10))):
        folder = draw(st.sampled_from(["", "P1", "P2", "nested/P1", "Plättchen 2"]))
        if draw(st.integers(0, 4)) == 0:
            name = draw(RAW_NAME)
        else:
            plate = draw(NAME_PART)
            prefix = f"{plate}_" if plate else ""
            name = f"{prefix}{draw(WELL_PART)}{draw(SITE_PART)}{draw(CHANNEL_PART)}{draw(SUFFIX)}"
        if len(name.encode()) <= 200:
            out.append((folder, name))
    return out


def _write_images(root: Path, names: list[tuple[str, str]], garbage: list[bool]) -> None:
    for (folder, name), junk in zip(names, garbage, strict=True):
        target = root / folder / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if junk:
                target.write_bytes(b"II*\x00" + b"\xff" * 7)
            else:
                tifffile.imwrite(target, np.full((6, 6), 1000, np.uint16))
        except (OSError, ValueError):  # a name the file system refuses (too long, a folder clash)
            continue


def check_index(
    names: list[tuple[str, str]], garbage: list[bool], pm_text: str, lenient: bool
) -> FibroclassError | None:
    """`build_index` returns a consistent field index or raises FibroclassError (returned)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        _write_images(root, names, garbage)
        pm = Path(tmp) / "platemap.csv"
        pm.write_text(pm_text, encoding="utf-8")
        try:
            result = build_index(root, pm, lenient=lenient)
        except FibroclassError as exc:
            return exc
        index = result.index
        assert len(index) > 0 and not index.duplicated([PLATE, WELL, SITE]).any()
        assert index[WELL].map(lambda w: bool(CANONICAL_WELL.match(w))).all()
        for ch in ("actin", "nuclei"):
            for path, skip in zip(
                index[path_col(ch)], index.get(SKIP_REASON, [""] * len(index)), strict=True
            ):
                assert (path and Path(path).is_file()) or skip, (path, skip)
    return None


# -- pixel data ---------------------------------------------------------------------------------------------
DTYPES = st.sampled_from(["uint8", "uint16", "int16", "int32", "uint32", "float32", "float64"])


@st.composite
def planes(draw: st.DrawFn) -> np.ndarray:
    """One stored plane: any of the dtypes above, 2-D or not (RGB, stacks), values anywhere incl. NaN/inf."""
    dtype = np.dtype(draw(DTYPES))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    shape = draw(st.sampled_from([(h, w), (h, w), (h, w), (h, w, 3), (2, h, w), (1, h, w)]))
    if dtype.kind == "f":
        width = dtype.itemsize * 8
        elements = st.one_of(st.floats(-2, 70000, width=width), st.sampled_from([np.nan, np.inf, -np.inf]))
        if draw(st.booleans()):
            elements = st.floats(0, 1, width=dtype.itemsize * 8)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


def check_field(
    actin: np.ndarray, nuclei: np.ndarray, bit_depth: int | None, factor: int, crop: int
) -> FibroclassError | None:
    """`read_field` gives a (2, H, W) float32 field or FibroclassError (returned); scoring's field reader
    never raises."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / "a.tif"), str(Path(tmp) / "n.tif")]
        try:
            tifffile.imwrite(paths[0], actin)
            tifffile.imwrite(paths[1], nuclei)
        except (ValueError, TypeError):  # tifffile cannot store it: not an input anyone can have
            assume(False)
        flagged = None
        try:
            img = read_field(paths, bit_depth)
        except FibroclassError as exc:
            img, flagged = None, exc
        if img is not None:
            assert img.dtype == np.float32 and img.ndim == 3 and img.shape[0] == 2
            finite = img[np.isfinite(img)]
            if bit_depth is None and finite.size:
                assert finite.min() >= -1e-3 and finite.max() <= 1 + 1e-3
        i, tiles, _, reason = FieldTiles([paths], factor, crop, ("actin", "nuclei"))[0]
        assert i == 0 and isinstance(reason, str)
        if tiles is None:
            assert reason, "a field without tiles needs a reason"
        else:
            assert reason == "" and tiles.shape[1:] == (2, crop, crop) and bool(tiles.isfinite().all())
    return flagged


@st.composite
def damaged_tiffs(draw: st.DrawFn) -> bytes:
    """The bytes of a valid TIFF, truncated, overwritten or padded at fuzzed positions."""
    buf = io.BytesIO()
    arr = np.arange(draw(st.integers(1, 12)) * 7, dtype=np.uint16).reshape(-1, 7)
    tifffile.imwrite(buf, arr, compression=draw(st.sampled_from([None, "zlib"])))
    data = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "truncate":
            data = data[:pos]
        elif op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = draw(st.binary(max_size=8))
    return bytes(data)


def check_tiff_bytes(data: bytes) -> FibroclassError | None:
    """`read_raw` of a damaged file returns a 2-D plane or raises FibroclassError naming the file (returned)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "field_w1.tif"
        path.write_bytes(data)
        try:
            arr = read_raw(path)
        except FibroclassError as exc:
            assert str(path) in str(exc), str(exc)
            return exc
        assert arr.ndim == 2
    return None


# -- whole plates through `score` -------------------------------------------------------------------------------
FILE_DAMAGE = st.sampled_from(
    ["ok"] * 6
    + ["truncate", "empty", "garbage", "nan", "uint8", "float_unit", "float_big", "int32", "rgb", "shape"]
    + ["delete", "duplicate", "claims_60000_square", "claims_100000_planes"]
)
MAP_DAMAGE = st.sampled_from(
    [
        "drop_row",
        "dup_row",
        "conflict_row",
        "bad_well",
        "bad_role",
        "a1_style",
        "row_without_images",
        "no_healthy",
    ]
)
_SCREEN = [
    ("A01", "healthy"),
    ("A02", "healthy"),
    ("B01", "disease"),
    ("B02", "disease"),
    ("C01", "treatment"),
    ("C02", "reference"),
]
_MODEL: list = []


def _tiny_model():  # noqa: ANN202 - FibroClassifier, built once per process
    if not _MODEL:
        import torch

        from fibroclass.models.classifier import FibroClassifier
        from fibroclass.models.spec import ModelSpec

        torch.manual_seed(0)
        _MODEL.append(FibroClassifier(ModelSpec(crop_size=16, mean=[0.2, 0.1], std=[0.1, 0.1])).eval())
    return _MODEL[0]


def _damage_file(path: Path, how: str) -> None:
    img = tifffile.imread(path)
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00junk" * 40)
    elif how == "nan":
        bad = (img / 65535).astype(np.float32)
        bad[:3] = np.nan
        tifffile.imwrite(path, bad)
    elif how == "uint8":
        tifffile.imwrite(path, (img // 257).astype(np.uint8))
    elif how == "float_unit":
        tifffile.imwrite(path, (img / 65535).astype(np.float32))
    elif how in ("float_big", "int32"):
        tifffile.imwrite(path, img.astype(np.float64 if how == "float_big" else np.int32))
    elif how == "rgb":
        tifffile.imwrite(path, np.stack([(img // 257).astype(np.uint8)] * 3, axis=-1), photometric="rgb")
    elif how == "shape":
        tifffile.imwrite(path, img[:20, :17])
    elif how == "delete":
        path.unlink()
    elif how == "claims_60000_square":  # a sparse file whose header claims 7.2 GB of pixels
        path.unlink()
        tifffile.imwrite(path, shape=(60000, 60000), dtype="uint16")
    elif how == "claims_100000_planes":  # an ImageJ stack with one IFD claiming 100000 planes
        path.unlink()
        tifffile.imwrite(
            path, shape=(100000, 64, 64), dtype="uint16", imagej=True, truncate=True, metadata={"axes": "ZYX"}
        )
    elif how == "duplicate":
        path.with_name(path.stem + "0A1B2C3D-0000-4000-8000-00000000000F.tif").write_bytes(path.read_bytes())


def _damage_map(rows: list[dict], how: str) -> list[dict]:
    rows = [dict(r) for r in rows]
    if how == "drop_row":
        rows.pop(4)
    elif how == "dup_row":
        rows.append(dict(rows[0]))
    elif how == "conflict_row":
        rows.append(rows[4] | {"compound": "other", "concentration_uM": 7})
    elif how == "bad_well":
        rows[5]["well"] = "Q99"
    elif how == "bad_role":
        rows[5]["role"] = "refrence"
    elif how == "a1_style":
        for r in rows:
            r["well"] = f"{r['well'][0].lower()}{int(r['well'][1:])}"
    elif how == "row_without_images":
        rows.append(
            {
                "plate": rows[0]["plate"],
                "well": "H12",
                "role": "treatment",
                "compound": "x",
                "concentration_uM": 1,
            }
        )
    elif how == "no_healthy":
        rows = [r for r in rows if r["role"] != "healthy" or r["plate"] != "P2"]
    return rows


def check_score(plates: int, damage: list[str], map_damage: list[str]) -> FibroclassError | None:
    """`score` on a small screen with damaged files and plate map: outputs meeting the contract (every field
    a row, failures flagged with a reason, plates with a verdict and reasons) or FibroclassError."""
    from fibroclass.scoring.config import config_from_dict
    from fibroclass.scoring.outputs import ScoreResult
    from fibroclass.scoring.pipeline import score

    with tempfile.TemporaryDirectory() as tmp:
        root, rows, files = Path(tmp) / "images", [], []
        rng = np.random.default_rng(len(damage))
        for plate in ("P1", "P2")[:plates]:
            (root / plate).mkdir(parents=True)
            for well, role in _SCREEN:
                level = {"healthy": 9000, "disease": 30000}.get(role, 20000)
                for w in (1, 2):
                    path = root / plate / f"{plate}_{well}_s1_w{w}.tif"
                    tifffile.imwrite(path, rng.normal(level, 800, (24, 24)).clip(0, 65535).astype(np.uint16))
                    files.append(path)
                compound = "drugX" if role in ("treatment", "reference") else "DMSO"
                conc = 1.0 if role in ("treatment", "reference") else 0.0
                rows.append(
                    {
                        "plate": plate,
                        "well": well,
                        "role": role,
                        "compound": compound,
                        "concentration_uM": conc,
                    }
                )
        for path, how in zip(files, damage, strict=False):
            _damage_file(path, how)
        for how in map_damage:
            rows = _damage_map(rows, how)
        pm = Path(tmp) / "plate map.csv"
        (pd.DataFrame(rows) if rows else pd.DataFrame(columns=["plate", "well"])).to_csv(pm, index=False)
        out = Path(tmp) / "out"
        try:
            result = score(
                [root], pm, _tiny_model(), out, config=config_from_dict({}), device="cpu", progress=False
            )
        except FibroclassError as exc:
            return exc
        assert isinstance(result, ScoreResult)
        for name in ("fields.parquet", "wells.csv", "plate_qc.json", "run.json", "compounds.csv"):
            assert (out / name).is_file(), name
        fields = pd.read_parquet(out / "fields.parquet")
        failed = ~fields["qc_pass"].astype(bool)
        assert (fields.loc[failed, "qc_reason"].astype(str) != "").all(), fields.loc[failed, "qc_reason"]
        assert np.isfinite(fields.loc[~failed, "disease_score"]).all()
        wells = pd.read_csv(out / "wells.csv")
        assert (wells["n_fields_used"] <= wells["n_fields"]).all()
        assert (np.isfinite(wells["disease_score"]) == (wells["n_fields_used"] > 0)).all()
        qc = json.loads((out / "plate_qc.json").read_text())["plates"]
        assert set(wells[PLATE].astype(str)) <= set(qc)
        for plate, q in qc.items():
            assert isinstance(q["pass"], bool) and (q["pass"] or q["reasons"]), (plate, q)
    return None


# -- runs -----------------------------------------------------------------------------------------------------
TARGETS = ("platemap", "index", "field", "tiff_bytes", "score")


def fuzz_runs(
    examples: int,
    counter: Counter,
    derandomize: bool = True,
    rng_seed: int | None = None,
    record: FuzzRecord | None = None,
) -> dict[str, Callable[[], None]]:
    """One hypothesis search per target (`TARGETS`), `examples` cases each (whole-screen `score` runs:
    a tenth of that, at least 2); `counter[target]` counts the cases checked. Without `record`, calling a
    run raises the (shrunk) failing case's exception (also for a MemoryError/RecursionError flagged as
    unreadable); with a `FuzzRecord`, every case's outcome is recorded there and crashes do not stop it."""
    cfg = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize and rng_seed is None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )

    def run(
        name: str, *strategies: st.SearchStrategy, check: Callable[..., None], n: int = examples
    ) -> Callable[[], None]:
        def case(args: tuple) -> None:
            if record is not None:
                record.run_case(name, check, args)
            else:
                outcome = check(*args)
                if outcome is not None and isinstance(outcome.__cause__, NEVER_UNREADABLE):
                    raise outcome.__cause__
            counter[name] += 1

        case.__name__ = f"fuzz_{name}"
        phases = cfg.phases if name != "score" else tuple(p for p in cfg.phases if p != Phase.shrink)
        fn = settings(cfg, max_examples=n, phases=phases)(given(st.tuples(*strategies))(case))
        return seed(rng_seed)(fn) if rng_seed is not None else fn

    pm_or_simple = st.one_of(platemap_texts(), st.sampled_from([_SIMPLE_MAP]))
    return {
        "platemap": run("platemap", platemap_texts(), st.booleans(), check=check_platemap),
        "index": run(
            "index",
            file_names(),
            st.lists(st.integers(0, 3).map(lambda k: k == 0), min_size=16, max_size=16),  # 1 in 4 garbage
            pm_or_simple,
            st.booleans(),
            check=lambda names, junk, pm, lenient: check_index(names, junk[: len(names)], pm, lenient),
        ),
        "field": run(
            "field",
            planes(),
            planes(),
            st.sampled_from([None, 8, 12, 16]),
            st.integers(1, 3),
            st.sampled_from([4, 8, 16]),
            check=check_field,
        ),
        "tiff_bytes": run("tiff_bytes", damaged_tiffs(), check=check_tiff_bytes),
        "score": run(
            "score",
            st.integers(1, 2),
            st.lists(FILE_DAMAGE, min_size=24, max_size=24),
            st.lists(MAP_DAMAGE, max_size=2),
            check=check_score,
            n=max(2, examples // 10),
        ),
    }


_SIMPLE_MAP = (
    "plate,well,role,compound,concentration_uM\n"
    "P1,A01,healthy,DMSO,0\nP1,B02,disease,DMSO,0\nP1,H12,treatment,drugX,1\n"
    "P2,A1,healthy,,\nP2,B2,disease,DMSO,0\nplate 3,A01,healthy,DMSO,0\n"
)


__all__ = [
    "TARGETS",
    "fuzz_runs",
    "check_field",
    "check_index",
    "check_platemap",
    "check_score",
    "check_tiff_bytes",
    "damaged_tiffs",
    "file_names",
    "planes",
    "platemap_texts",
]
