#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv, and use it from an empty folder outside the checkout:
# `fibroclass --version`, shipped configs by name, and `fibroclass demo` end to end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$repo/.venv/bin/python" -m build --wheel --outdir "$work/dist" "$repo" >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$work"/dist/fibroclass-*.whl
mkdir "$work/empty" && cd "$work/empty"
export NO_ALBUMENTATIONS_UPDATE=1 MLFLOW_TRACKING_URI="sqlite:///$work/empty/mlruns.db"
"$work/venv/bin/fibroclass" --version
"$work/venv/bin/python" - <<'PY'
from fibroclass.configs import resolve_config, shipped
from fibroclass.scoring.config import load_score_config
for kind in ("train", "score"):
    for name in shipped(kind):
        assert resolve_config(kind, name).is_file(), (kind, name)
assert load_score_config("default").z_prime_min == 0.5
print("configs by name:", {k: shipped(k) for k in ("train", "score")})
PY
"$work/venv/bin/fibroclass" demo --out demo_out
test -f demo_out/score/report.html && test -f demo_out/score/compounds.csv
grep -q "il6_pg_ml_rescue_pct" demo_out/score/wells.csv  # the demo scores its simulated IL-6 assay
grep -q "fcWirePlate" demo_out/score/report.html          # the interactive report (report.js shipped)
"$work/venv/bin/fibroclass" report demo_out/score --out demo_out/screen/screen.html
test -f demo_out/screen/screen_compounds.csv
echo "wheel ok: installed fibroclass ran the demo from $work/empty"
