"""Rescue meters vs the simulator's ground truth, over seeds and simulator settings.

For each setting and seed: simulate a training set and a two-plate 96-well screen, train the default
CNN (configs/train/default.yaml), score the screen (default score config, no report) and compare every
rescue readout in wells.csv with the true rescue of each well:

- Spearman ρ(readout, true rescue) over viable treated wells (true viability ≥ 70 %, finite readout);
- Z′ of the control wells on the readout's own scale (the well score that readout normalizes), min over
  plates;
- EC50 / true EC50 per rescuer (4PL on the readout, viable doses), the potency order, the fitted Emax
  against the true one, and (for the primary `rescue_pct`) whether every compound's call is right.

True rescue of a well = 100·(s_GoF − s)/(s_GoF − s_HD): its simulated severity s between the plate's
two control donors' baseline severities. Settings (`SETTINGS`): the simulator's defaults; stronger donor
variation (`donor_variation` 2, screen donors unseen in training); partial rescuers (every rescue
compound Emax 60 %).

python benchmarks/truth_meter.py [--settings default donors partial] [--seeds 0 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
EXPECTED_CALL = {"rescue": "hit", "inert": "inactive", "toxic": "toxic", "off_target": "off_target"}
VIABLE = 0.7  # true viability of the wells the Spearman is computed over


@dataclass(frozen=True)
class Setting:
    """Simulator options of one benchmark setting."""

    name: str
    donor_variation: float = 1.0
    rescue_emax: float | None = None
    unseen_donor: bool = False  # screen donors HD5/GoF5, not in the training set
    note: str = ""


SETTINGS = {
    "default": Setting("default", note="simulator defaults"),
    "donors": Setting(
        "donors", donor_variation=2.0, unseen_donor=True, note="2x donor variation, unseen donor"
    ),
    "partial": Setting("partial", rescue_emax=0.6, note="every rescuer Emax 60 %"),
}


@dataclass(frozen=True)
class Meter:
    """A rescue readout in wells.csv: its rescue column and the well score it normalizes."""

    name: str
    rescue: str
    score: str
    sign: float = 1.0  # +1: higher score = more diseased (rescue falls with the score)


# The meters compared (columns written by scoring.wells.readout; `rescue_pct` is the primary one).
METERS = (
    Meter("primary (rescue_pct)", "rescue_pct", "readout_score"),
    Meter("CNN logit", "rescue_pct_logit", "disease_score"),
    Meter("embedding axis", "rescue_pct_axis", "axis_score"),
    Meter("coherency alone", "org_rescue_pct", "org_coherency", sign=-1.0),
)


def _fib(*argv: str) -> None:
    from fibroclass.cli.app import main

    rc = main(list(argv))
    if rc != 0:
        raise SystemExit(f"fibroclass {' '.join(argv)} failed (exit {rc})")


@dataclass
class Run:
    setting: Setting
    seed: int
    out: Path
    donor_index: int = 1
    times: dict[str, float] = field(default_factory=dict)


def prepare(out: Path, setting: Setting, seed: int, size: int, fields: int, plates: int) -> Run:
    """Simulate, index, split and train (skipped when `out` already holds a trained model)."""
    from fibroclass.simulate import simulate_screen, simulate_training_set

    out.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out / 'mlruns.db'}"
    donors = 4
    run = Run(setting, seed, out, donor_index=donors + 1 if setting.unseen_donor else 1)
    if (out / "trained.json").is_file():
        return run
    t0 = time.perf_counter()
    common = {"seed": seed, "size": size, "fields": fields, "donor_variation": setting.donor_variation}
    simulate_training_set(out / "train", donors_per_class=donors, **common)
    simulate_screen(
        out / "screen",
        n_plates=plates,
        donor_index=run.donor_index,
        rescue_emax=setting.rescue_emax,
        **common,
    )
    run.times["simulate"] = time.perf_counter() - t0
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
    os.chdir(out)  # lightning_logs/ of the fit land in the run folder
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
    run.times["index+split+train"] = time.perf_counter() - t0
    (out / "trained.json").write_text(json.dumps({"times": run.times}))
    return run


def score(run: Run) -> Path:
    """Score the screen with the run's registered model (default config, no report)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{run.out / 'mlruns.db'}"
    cfg = run.out / "score_config.yaml"
    cfg.write_text(f"include: {REPO / 'configs' / 'score' / 'default.yaml'}\nreport:\n  enabled: false\n")
    out = run.out / "score"
    shutil.rmtree(out, ignore_errors=True)  # never reuse parts scored by other code
    t0 = time.perf_counter()
    _fib(
        "score", str(run.out / "screen" / "images"), "--platemap", str(run.out / "screen" / "platemap.csv"),
        "--model", "models:/fibroclass@challenger", "--out", str(out), "--config", str(cfg),
        "--no-progress", "--no-mlflow",
    )  # fmt: skip
    run.times["score"] = time.perf_counter() - t0
    return out


# -- comparison ------------------------------------------------------------------------------------------
def true_rescue(wells: pd.DataFrame, sim: Path, seed: int, donor_index: int, variation: float) -> pd.Series:
    """100·(s_GoF − s)/(s_GoF − s_HD) per well from the simulated severities and the control donors."""
    from fibroclass.simulate import plates as pl

    truth = pd.read_csv(sim / "ground_truth_wells.csv").rename(
        columns={"plate": "Metadata_Plate", "well": "Metadata_Well", "offtarget": "true_offtarget"}
    )
    merged = wells[["Metadata_Plate", "Metadata_Well"]].merge(truth, how="left")
    s_h = pl.make_donor(seed, pl.HEALTHY, donor_index, variation).severity
    s_d = pl.make_donor(seed, pl.GOF, donor_index, variation).severity
    out = merged.assign(true_rescue=100.0 * (s_d - merged["severity"]) / (s_d - s_h))
    return out.set_index(wells.index)[["true_rescue", "viability", "true_offtarget"]]


def _z_prime(h: np.ndarray, d: np.ndarray) -> float:
    h, d = h[np.isfinite(h)], d[np.isfinite(d)]
    if len(h) < 2 or len(d) < 2 or h.mean() == d.mean():
        return math.nan
    return 1.0 - 3.0 * (h.std(ddof=1) + d.std(ddof=1)) / abs(h.mean() - d.mean())


def meter_figures(wells: pd.DataFrame, truth: pd.DataFrame, comps: pd.DataFrame, m: Meter) -> dict[str, Any]:
    """Spearman, min Z′ over plates on the meter's own scale, and EC50/Emax of every rescuer."""
    from fibroclass.scoring.compounds.doseresponse import fit_compounds
    from fibroclass.scoring.config import DoseResponseParams

    if m.rescue not in wells or m.score not in wells:
        return {}
    rescue = wells[m.rescue].to_numpy(float)
    scale = wells[m.score].to_numpy(float)
    viable = (wells["role"] == "treatment").to_numpy() & (truth["viability"].to_numpy() >= VIABLE)
    ok = viable & np.isfinite(rescue)
    rho = float(stats.spearmanr(rescue[ok], truth["true_rescue"].to_numpy()[ok]).statistic)
    zps = {}
    for plate, idx in wells.groupby("Metadata_Plate").indices.items():
        role = wells["role"].to_numpy()[idx]
        zps[str(plate)] = _z_prime(scale[idx][role == "healthy"], scale[idx][role == "disease"])
    fits = fit_compounds(wells, DoseResponseParams(), response_col=m.rescue)
    rescuers = comps[comps["kind"] == "rescue"]
    ec50 = {}
    for r in rescuers.itertuples():
        fit = fits.get(r.compound)
        fitted = fit.ec50_uM if fit is not None and not fit.ec50_qualifier else math.nan
        ec50[r.compound] = {
            "ratio": fitted / r.ec50_uM if math.isfinite(fitted) else math.nan,
            "emax_pct": fit.emax_pct if fit is not None else math.nan,
            "true_emax_pct": 100.0 * r.emax,
        }
    fitted_order = sorted(
        ec50, key=lambda c: (math.isnan(ec50[c]["ratio"]), fits[c].ec50_uM if c in fits else 0)
    )
    true_order = list(rescuers.sort_values("ec50_uM")["compound"])
    return {
        "spearman": rho,
        "z_prime": zps,
        "z_prime_min": min(zps.values()),
        "ec50": ec50,
        "order_right": fitted_order == true_order,
        "n_wells": int(ok.sum()),
    }


def compare(run: Run, score_dir: Path) -> dict[str, Any]:
    """Every meter of one scored screen vs its ground truth (`rows_of` turns it into table rows)."""
    out = compare_dirs(score_dir, run.out / "screen", run.setting, run.seed, run.donor_index)
    out["times"] = run.times
    return out


def compare_dirs(
    score_dir: Path, sim: Path, setting: Setting, seed: int, donor_index: int = 1
) -> dict[str, Any]:
    """`compare` for a score folder and the simulation folder it scored (also used by readout_truth.py)."""
    wells = pd.read_csv(score_dir / "wells.csv")
    comps = pd.read_csv(sim / "ground_truth_compounds.csv")
    truth = true_rescue(wells, sim, seed, donor_index, setting.donor_variation)
    called = pd.read_csv(score_dir / "compounds.csv").merge(comps[["compound", "kind"]], on="compound")
    called["expected"] = called["kind"].map(EXPECTED_CALL)
    qc = json.loads((score_dir / "plate_qc.json").read_text())["plates"]
    figures = {m.name: meter_figures(wells, truth, comps, m) for m in METERS}
    return {
        "setting": setting.name,
        "seed": seed,
        "meters": figures,
        "calls": called[["compound", "kind", "expected", "call", "call_reason"]].to_dict("records"),
        "calls_right": bool((called["call"] == called["expected"]).all()),
        "plates_pass": {p: bool(q["pass"]) for p, q in qc.items()},
    }


# -- tables ----------------------------------------------------------------------------------------------
def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per meter: Spearman, min Z′, EC50 ratio (and fitted Emax) per rescuer."""
    rows = []
    for name, f in result["meters"].items():
        if not f:
            continue
        row = {
            "setting": result["setting"],
            "seed": result["seed"],
            "meter": name,
            "Spearman": f["spearman"],
            "Z′ min": f["z_prime_min"],
        }
        for comp, e in f["ec50"].items():
            row[f"EC50 ratio {comp}"] = e["ratio"]
            row[f"Emax {comp} (true {e['true_emax_pct']:.0f})"] = e["emax_pct"]
        row["order"] = "right" if f["order_right"] else "WRONG"
        row["calls"] = ("right" if result["calls_right"] else "WRONG") if name.startswith("primary") else "-"
        rows.append(row)
    return rows


def checks(results: list[dict[str, Any]]) -> dict[str, bool]:
    """The issue's Done-when criteria over every setting and seed."""
    primary, coh = METERS[0].name, "coherency alone"
    out: dict[str, bool] = {}

    def every(pred) -> bool:
        return all(pred(r["meters"][primary], r) for r in results)

    def ratio_ok(f: dict, tol: float) -> bool:
        return all(math.isfinite(e["ratio"]) and 1 / tol <= e["ratio"] <= tol for e in f["ec50"].values())

    def err(f: dict) -> float:
        return max(
            abs(math.log(e["ratio"])) if math.isfinite(e["ratio"]) else math.inf for e in f["ec50"].values()
        )

    out["Spearman >= 0.95"] = every(lambda f, r: f["spearman"] >= 0.95)
    out["Z′ >= 0.7 on every plate (readout's scale)"] = every(lambda f, r: f["z_prime_min"] >= 0.7)
    out["EC50 within 1.5x, potency order right"] = every(lambda f, r: ratio_ok(f, 1.5) and f["order_right"])
    out["all calls right"] = all(r["calls_right"] for r in results)
    out["beats coherency: Spearman"] = every(lambda f, r: f["spearman"] > r["meters"][coh]["spearman"])
    out["beats coherency: Z′"] = every(lambda f, r: f["z_prime_min"] > r["meters"][coh]["z_prime_min"])
    out["beats coherency: EC50 error"] = every(lambda f, r: err(f) < err(r["meters"][coh]))
    return out


def run_all(
    out: Path, settings: list[str], seeds: list[int], size: int, fields: int, plates: int
) -> list[dict]:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("FIBROCLASS_PROGRESS", "0")
    results = []
    for name in settings:
        for seed in seeds:
            run = prepare(out / f"{name}_seed{seed}", SETTINGS[name], seed, size, fields, plates)
            results.append(compare(run, score(run)))
    return results


def report(results: list[dict[str, Any]]) -> bool:
    from common import print_table

    rows = [row for r in results for row in rows_of(r)]
    print_table(
        "rescue meters vs ground truth (Spearman over viable treated wells; Z′ on each meter's scale)", rows
    )
    ok = checks(results)
    print_table(
        "Done when (every setting and seed)",
        [{"criterion": k, "holds": "yes" if v else "NO"} for k, v in ok.items()],
    )
    return all(ok.values())


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fields", type=int, default=3)
    parser.add_argument("--plates", type=int, default=2)
    args = parser.parse_args()
    print(
        f"rescue meters vs ground truth: {machine()}; {args.size} px, {args.fields} fields/well, {args.plates} plates"
    )
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            ok = report(run_all(Path(tmp), args.settings, args.seeds, args.size, args.fields, args.plates))
    else:
        out = args.out.resolve()
        results = run_all(out, args.settings, args.seeds, args.size, args.fields, args.plates)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        ok = report(results)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
