"""Screening readout vs the simulator's ground truth: EC50s, potency order, calls, field QC, plate gate.

Simulates a training set and a 96-well screen, trains with configs/train/default.yaml, scores the screen
with the registered model (`fibroclass score`, logged to MLflow), and prints, against the ground truth:
each rescue compound's fitted vs true EC50 (ratio), the potency order, calls vs compound kinds, the
QC flag rate of out-of-focus/empty fields vs clean fields, and Z′. The plate map is then scored with its
healthy/disease control labels swapped, and mixed (half of each group relabelled): both must FAIL.

python benchmarks/readout_truth.py [--out DIR] [--size 128] [--fields 3] [--seed 0]
Exit status 1 when a Done-when criterion does not hold.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXPECTED_CALL = {"rescue": "hit", "inert": "inactive", "toxic": "toxic", "off_target": "off_target"}


def _fib(*argv: str) -> None:
    from fibroclass.cli.app import main

    rc = main(list(argv))
    if rc != 0:
        raise SystemExit(f"fibroclass {' '.join(argv)} failed (exit {rc})")


def relabel(platemap: pd.DataFrame, how: str) -> pd.DataFrame:
    """Control labels swapped (healthy <-> disease), or mixed: every other well of each group relabelled."""
    pm = platemap.copy()
    ctrl = pm["role"].isin(["healthy", "disease"])
    flip = {"healthy": "disease", "disease": "healthy"}
    if how == "swapped":
        pm.loc[ctrl, "role"] = pm.loc[ctrl, "role"].map(flip)
    else:
        for role in ("healthy", "disease"):
            rows = pm.index[pm["role"] == role][::2]
            pm.loc[rows, "role"] = flip[role]
    return pm


def compare(score_dir: Path, sim_dir: Path) -> dict:
    """Readout of one scored screen vs its ground truth (tables + Done-when checks)."""
    truth_c = pd.read_csv(sim_dir / "ground_truth_compounds.csv")
    comps = pd.read_csv(score_dir / "compounds.csv").merge(truth_c, on="compound", suffixes=("", "_true"))
    qc = json.loads((score_dir / "plate_qc.json").read_text())["plates"]
    fields = pd.read_parquet(score_dir / "fields.parquet")
    truth_f = pd.read_csv(sim_dir / "ground_truth_fields.csv").rename(
        columns={"plate": "Metadata_Plate", "well": "Metadata_Well", "site": "Metadata_Site"}
    )
    fields = fields.merge(truth_f[["Metadata_Plate", "Metadata_Well", "Metadata_Site", "artefact"]])
    flagged = ~fields["qc_pass"].astype(bool)

    rescue = comps[comps["kind"] == "rescue"].copy()
    rescue["ratio"] = rescue["ec50_uM"] / rescue["ec50_uM_true"]
    rescue["within_2x"] = (rescue["ec50_qualifier"].fillna("") == "") & rescue["ratio"].between(0.5, 2.0)
    fitted_order = list(rescue.sort_values("ec50_uM")["compound"])
    true_order = list(rescue.sort_values("ec50_uM_true")["compound"])
    comps["expected"] = comps["kind"].map(EXPECTED_CALL)
    art = fields["artefact"]
    rates = {
        "blur": float(flagged[art == "blur"].mean()),
        "empty": float(flagged[art == "empty"].mean()),
        "blur+empty": float(flagged[art.isin(["blur", "empty"])].mean()),
        "debris": float(flagged[art == "debris"].mean()),
        "clean": float(flagged[art == "none"].mean()),
    }
    counts = {k: int((art == k).sum()) for k in ("blur", "empty", "debris", "none")}
    non_rescue = comps[comps["kind"] != "rescue"]
    checks = {
        "rescue EC50s within 2x": bool(rescue["within_2x"].all()),
        "potency order right": fitted_order == true_order,
        "inert inactive, toxic toxic, off-target off_target": bool(
            (non_rescue["call"] == non_rescue["expected"]).all()
        ),
        "no non-rescue compound is a hit": bool((non_rescue["call"] != "hit").all()),
        ">= 90% of blur/empty fields flagged": rates["blur+empty"] >= 0.9,
        "<= 2% of clean fields flagged": rates["clean"] <= 0.02,
        "Z' >= 0.5 and plate passes": all(
            (q["z_prime"] or -math.inf) >= 0.5 and q["pass"] for q in qc.values()
        ),
    }
    return {
        "rescue": rescue,
        "calls": comps,
        "order": (fitted_order, true_order),
        "rates": rates,
        "counts": counts,
        "plate_qc": qc,
        "checks": checks,
    }


def run(out: Path, size: int = 128, fields: int = 3, seed: int = 0) -> dict:
    """Simulate, train, score (clean, swapped and mixed plate maps); returns the comparisons and timings."""
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out / 'mlruns.db'}"
    os.environ.setdefault("FIBROCLASS_PROGRESS", "0")
    common = ["--seed", str(seed), "--size", str(size), "--fields", str(fields), "--no-progress"]
    times = {}
    t0 = time.perf_counter()
    _fib("simulate", "train", "--out", str(out / "train"), *common)
    _fib("simulate", "screen", "--out", str(out / "screen"), *common)
    times["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = out / "train_index.parquet"
    _fib(
        "index",
        str(out / "train" / "images"),
        "--platemap",
        str(out / "train" / "platemap.csv"),
        "--out",
        str(index),
    )
    _fib("split", str(index), "--by", "donor", "--out", str(out / "split"), "--seed", str(seed))
    cwd = Path.cwd()
    os.chdir(out)  # lightning_logs/ of the fit land in the benchmark folder
    try:
        _fib(
            "train",
            "--config",
            str(REPO / "configs" / "train" / "default.yaml"),
            "--data.split",
            str(out / "split"),
        )
    finally:
        os.chdir(cwd)
    times["index+split+train"] = time.perf_counter() - t0

    results = {}
    platemap = pd.read_csv(out / "screen" / "platemap.csv")
    for variant in ("clean", "swapped", "mixed"):
        pm = out / "screen" / "platemap.csv"
        if variant != "clean":
            pm = out / f"platemap_{variant}.csv"
            relabel(platemap, variant).to_csv(pm, index=False)
        t0 = time.perf_counter()
        score_dir = out / f"score_{variant}"
        _fib(
            "score", str(out / "screen" / "images"), "--platemap", str(pm),
            "--model", "models:/fibroclass@challenger", "--out", str(score_dir), "--no-progress",
        )  # fmt: skip
        times[f"score ({variant})"] = time.perf_counter() - t0
        results[variant] = compare(score_dir, out / "screen")
    clean = results["clean"]
    clean["checks"]["swapped plate map FAILS"] = not any(
        q["pass"] for q in results["swapped"]["plate_qc"].values()
    )
    clean["checks"]["mixed plate map FAILS"] = not any(
        q["pass"] for q in results["mixed"]["plate_qc"].values()
    )
    clean["checks"]["report.html with every panel"] = _report_ok(out / "score_clean" / "report.html")
    from truth_meter import SETTINGS, compare_dirs

    meters = compare_dirs(out / "score_clean", out / "screen", SETTINGS["default"], seed)
    return {"results": results, "times": times, "out": out, "meters": meters}


def _report_ok(path: Path) -> bool:
    """report.html (interactive) has every section and panel; plots/report_static.html every static one."""
    from fibroclass.scoring.report.html import SECTIONS

    html = path.read_text() if path.is_file() else ""
    static = path.parent / "plots" / "report_static.html"
    static_html = static.read_text() if static.is_file() else ""
    sections = (
        "plate-qc",
        "compounds",
        "dose-response",
        "heatmaps",
        "embedding",
        "controls",
        "montage",
        "organization",
    )
    panels = (
        "fc-controls",
        "fc-embedding",
        "fc-compound-table",
        "fc-dr-",
        "fig-montage",
        "fig-montage_gradcam",
        "fig-organization_agreement",
    )
    interactive = all(f'id="{s}"' in html for s in sections) and all(p in html for p in panels)
    static_ok = all(f'id="{s}"' in static_html for s in SECTIONS) and all(
        p in static_html for p in ("fig-dose_response", "fig-controls")
    )
    return interactive and static_ok


def report(res: dict) -> bool:
    """Print the tables; True when every Done-when check holds."""
    clean = res["results"]["clean"]
    rescue = clean["rescue"]
    print_table(
        "rescue compounds: fitted vs true EC50",
        [
            {
                "compound": r.compound,
                "true EC50 µM": r.ec50_uM_true,
                "fitted EC50 µM": f"{r.ec50_qualifier if isinstance(r.ec50_qualifier, str) else ''}{r.ec50_uM:.3g}",
                "95% CI": f"{r.ec50_ci_low_uM:.3g}-{r.ec50_ci_high_uM:.3g}",
                "ratio": r.ratio,
                "true Emax %": 100 * r.emax,
                "fitted Emax %": r.emax_pct,
                "within 2x": bool(r.within_2x),
            }
            for r in rescue.itertuples()
        ],
    )
    fitted, true = clean["order"]
    print(f"potency order: fitted {' < '.join(fitted)}; true {' < '.join(true)}\n")
    print_table(
        "calls vs simulated kinds",
        [
            {
                "compound": r.compound,
                "kind": r.kind,
                "expected": r.expected,
                "call": r.call,
                "why": r.call_reason,
            }
            for r in clean["calls"].itertuples()
        ],
    )
    counts, rates = clean["counts"], clean["rates"]
    print_table(
        "field QC vs ground truth (fraction of fields flagged)",
        [
            {"fields": k, "n": counts[k if k != "clean" else "none"], "flagged": rates[k]}
            for k in ("blur", "empty", "debris", "clean")
        ],
    )
    rows = []
    for variant, r in res["results"].items():
        for plate, q in r["plate_qc"].items():
            rows.append(
                {
                    "plate map": variant,
                    "plate": plate,
                    "Z'": q["z_prime"],
                    "SSMD": q["ssmd"],
                    "verdict": "PASS" if q["pass"] else "FAIL",
                    "reasons": "; ".join(q["reasons"]) or "-",
                }
            )
    print_table("plate gate (Z′ and SSMD on the rescue meter's scale, control wells cross-fitted)", rows)
    meters = res.get("meters")  # every rescue meter vs the true rescue (benchmarks/truth_meter.py)
    if meters is not None:
        from truth_meter import rows_of

        print_table("rescue meters vs ground truth (truth_meter.py; one seed)", rows_of(meters))
    print_table("timings", [{"step": k, "seconds": v} for k, v in res["times"].items()])
    checks = clean["checks"]
    print_table("Done when", [{"criterion": k, "holds": "yes" if v else "NO"} for k, v in checks.items()])
    return all(checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fields", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"readout vs ground truth: {machine()}; size {args.size}, {args.fields} fields/well, seed {args.seed}"
    )
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            ok = report(run(Path(tmp), args.size, args.fields, args.seed))
    else:
        ok = report(run(args.out.resolve(), args.size, args.fields, args.seed))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
