"""Property-based fuzzing of plate maps, file names and pixel data (targets in `fuzz_targets`).

Default run: `FIBROCLASS_FUZZ_EXAMPLES` (25) derandomized cases per target (whole-screen `score`: 2), failing
with the shrunk case. The slow test runs `scripts/fuzz.py` itself on the current commit (150 per target,
`score`: 15; over 600 cases, a fresh seed each run) and checks its record: 0 crashed. Nothing is committed;
the record it wrote is printed for the CI log.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from fuzz_record import FuzzRecord
from fuzz_targets import TARGETS, check_tiff_bytes, fuzz_runs

EXAMPLES = int(os.environ.get("FIBROCLASS_FUZZ_EXAMPLES", "25"))
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_never_crashes(target):
    counter: Counter = Counter()
    fuzz_runs(EXAMPLES, counter)[target]()
    assert counter[target] >= (2 if target == "score" else min(EXAMPLES, 10))


def test_the_record_splits_ok_flagged_and_crashed():
    record = FuzzRecord()
    record.run_case("tiff_bytes", check_tiff_bytes, (b"II*\x00" + b"\x00" * 4,))  # flagged: decoder error
    record.run_case("tiff_bytes", check_tiff_bytes, (b"",))
    record.run_case("tiff_bytes", lambda: 1 / 0, ())  # a crash is recorded, not raised
    rec = record.target("tiff_bytes").to_dict()
    assert (rec["cases"], rec["ok"], rec["flagged_as_unreadable"], rec["crashed"]) == (3, 0, 2, 1)
    assert sum(rec["flagged_by_class"].values()) == 2
    assert all(" in " in cls for cls in rec["flagged_by_class"])  # class and the module that raised it
    ((cls, n),) = rec["crashed_by_class"].items()
    assert n == 1 and cls.startswith("ZeroDivisionError in ") and cls.endswith("test_fuzz")
    assert "ZeroDivisionError" in rec["crash_examples"][0]["traceback"]


def _script():  # noqa: ANN202 - the scripts/fuzz.py module
    spec = importlib.util.spec_from_file_location("fuzz_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_writes_a_reproducible_record(tmp_path):
    out = tmp_path / "record.json"
    assert (
        _script().main(
            ["--examples", "4", "--seed", "7", "--targets", "platemap,tiff_bytes", "--json", str(out)]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert record["seed"] == 7 and len(record["git"]["commit"] or "") == 40
    assert set(record["targets"]) == {"platemap", "tiff_bytes"}
    for r in record["targets"].values():
        assert r["cases"] == r["ok"] + r["flagged_as_unreadable"] + r["crashed"] and r["crashed"] == 0
    assert record["totals"]["cases"] == sum(r["cases"] for r in record["targets"].values())
    assert "--seed 7" in record["command"]


@pytest.mark.slow
def test_fuzz_500_cases_on_this_commit_without_a_crash(tmp_path):
    out = tmp_path / "fuzz-record.json"
    rc = _script().main(["--examples", "150", "--json", str(out)])
    record = json.loads(out.read_text())
    print(json.dumps({k: record[k] for k in ("seed", "git", "totals")}, indent=2))
    assert record["totals"]["cases"] >= 500, record["totals"]
    assert record["totals"]["crashed"] == 0 and rc == 0, json.dumps(record["targets"], indent=2)[:5000]


def test_robustness_page_quotes_the_committed_record():
    docs = SCRIPT.parents[1] / "docs"
    record = json.loads((docs / "fuzz-record.json").read_text())
    page = " ".join((docs / "robustness.md").read_text().split())
    t = record["totals"]
    assert record["totals"]["crashed"] == 0 and not record["git"]["dirty"]
    assert f"--seed {record['seed']}" in page and record["git"]["commit"][:8] in page
    assert (
        f"{t['cases']} cases: {t['ok']} ok, {t['flagged_as_unreadable']} flagged as unreadable, 0 crashed"
        in page
    )
    for name, r in record["targets"].items():
        row = f"| {name} | {r['cases']} | {r['ok']} | {r['flagged_as_unreadable']} | {r['crashed']} | {r['seconds']} |"
        assert row in page, row
