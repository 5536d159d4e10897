"""evaluation and the organization co-readout stay free of torch (DESIGN.md import rules)."""

from __future__ import annotations

import subprocess
import sys


def test_evaluation_and_organization_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import fibroclass.measure.organization, fibroclass.evaluation.metrics, fibroclass.evaluation.calibration\n"
        "import fibroclass.evaluation.baseline, fibroclass.evaluation.plots\n"
        "bad = [m for m in ('torch', 'lightning', 'mlflow', 'albumentations') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
