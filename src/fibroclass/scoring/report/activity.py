"""Report panel: phenotypic activity (copairs mAP of replicate wells vs vehicle) per compound and dose."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fibroclass.schema import COMPOUND, CONC
from fibroclass.scoring.report import html as rep


def activity_figure(per_dose: pd.DataFrame) -> Figure:
    """mAP vs dose, one line per compound; filled markers where the dose is active (q below the FDR)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for name, d in per_dose.sort_values(CONC).groupby(COMPOUND, sort=True):
        x, y, on = d[CONC].to_numpy(float), d["map"].to_numpy(float), d["active"].to_numpy(bool)
        (line,) = ax.plot(x, y, lw=1.0, label=str(name))
        ax.scatter(x[on], y[on], s=22, color=line.get_color(), zorder=3)
        ax.scatter(x[~on], y[~on], s=22, facecolors="none", edgecolors=line.get_color(), zorder=3)
    if (per_dose[CONC] > 0).any():
        ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("concentration (µM)", fontsize=8)
    ax.set_ylabel("mAP vs vehicle", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    ax.set_title("filled: active dose (FDR q below threshold)", fontsize=8)
    fig.tight_layout()
    return fig


def activity_section(per_dose: pd.DataFrame | None, plots: Path) -> str:
    """The plot plus a note on what mAP means here ('' content note when there is no activity table)."""
    if per_dose is None or per_dose.empty or not np.isfinite(per_dose["map"].to_numpy(float)).any():
        return '<p class="note">No phenotypic activity (no embeddings or no replicate wells).</p>'
    note = (
        '<p class="note">Mean average precision of each compound × dose\'s replicate wells retrieving each '
        "other against the plate's vehicle (disease-control) wells in the CNN embedding (copairs; permutation "
        "p-values, Benjamini–Hochberg FDR over all doses): it detects any consistent change of the cells, "
        "towards healthy or elsewhere (off-target, toxicity). Per dose in <code>activity.csv</code>; "
        "<code>activity_*</code> columns in <code>compounds.csv</code>.</p>"
    )
    caption = "phenotypic activity per compound and dose (mAP vs vehicle)"
    return note + rep._figure(activity_figure(per_dose), plots, "activity", html.escape(caption))


__all__ = ["activity_figure", "activity_section"]
