"""report.html of a scoring run: the interactive page (`report.interactive`) and the static one
(`report.html.render_report`, plots/report_static.html + plots/*.png for papers), both with the
organization co-readout section and Grad-CAM overlays of the montage fields (`scoring.finish` supplies
the numbers)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fibroclass.schema import FLAGS, PLATE, RESCUE_PCT, ROLE
from fibroclass.scoring.compounds.doseresponse import Fit4PL
from fibroclass.scoring.report import html as rep
from fibroclass.scoring.report import plots as rp
from fibroclass.scoring.report.activity import activity_section
from fibroclass.scoring.report.interactive import render_interactive_report
from fibroclass.scoring.report.thumbnails import well_thumbnails
from fibroclass.scoring.wells.organization import FLAG_ORG_DISAGREE, ORG_RESCUE_PCT


def _fmt(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def agreement_figure(wells: pd.DataFrame) -> Figure:
    """CNN rescue % vs organization rescue % per well, colored by role; `org_disagree` wells ringed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ok = wells[np.isfinite(wells[ORG_RESCUE_PCT]) & np.isfinite(wells[RESCUE_PCT])]
    roles = ok[ROLE].astype(str) if ROLE in ok else pd.Series("", index=ok.index)
    ax.scatter(ok[RESCUE_PCT], ok[ORG_RESCUE_PCT], s=14, c=[rp.ROLE_COLORS.get(r, "#969696") for r in roles])
    bad = ok[FLAGS].astype(str).str.contains(FLAG_ORG_DISAGREE) if FLAGS in ok else pd.Series(False, ok.index)
    if bad.any():
        ax.scatter(
            ok.loc[bad, RESCUE_PCT], ok.loc[bad, ORG_RESCUE_PCT], s=46, facecolors="none", edgecolors="k",
            label="org_disagree",
        )  # fmt: skip
        ax.legend(fontsize=7, loc="upper left")
    lo = min(-40.0, float(np.nanmin(ok[[RESCUE_PCT, ORG_RESCUE_PCT]].to_numpy()))) if len(ok) else -40.0
    ax.plot([lo, 160], [lo, 160], color="#bbbbbb", lw=0.8, ls="--")
    ax.set_xlabel("CNN rescue %", fontsize=8)
    ax.set_ylabel("organization rescue %", fontsize=8)
    ax.set_title("per well: green healthy, red disease, blue reference, grey treated", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def organization_section(wells: pd.DataFrame, summary: Mapping[str, dict], plots: Path) -> str:
    """Agreement table per plate, the agreement scatter and an organization-rescue heatmap per plate."""
    if not summary:
        return '<p class="note">No organization co-readout (the organization feature was not computed).</p>'
    feature = next(iter(summary.values()))["feature"]
    plates = sorted(summary)
    rows = []
    for plate in plates:
        s = summary[plate]
        warn = ' <b style="color:#d73027">⚠ disagree</b>' if s.get("agree") is False else ""
        rows.append(
            f'<tr><td class="text">{html.escape(plate)}</td><td>{_fmt(s.get("rho_rescue"))}{warn}</td>'
            f"<td>{_fmt(s.get('separation_sd'))}</td><td>{s.get('n_disagree', 0)}</td></tr>"
        )
    feats = sorted({c for s in summary.values() for c in s.get("rho_disease_score", {})})
    head = "".join(f"<th>{html.escape(p)}</th>" for p in plates)
    frows = [
        f'<tr><td class="text">{html.escape(c)}</td>'
        + "".join(f"<td>{_fmt(summary[p].get('rho_disease_score', {}).get(c))}</td>" for p in plates)
        + "</tr>"
        for c in feats
    ]
    parts = [
        '<p class="note">Classical co-readout of actin organization beside the CNN. <b>ρ rescue</b>: Spearman '
        f"ρ across wells between the CNN rescue % and the rescue % of <code>{html.escape(feature)}</code> (same "
        "control normalization); <b>controls apart</b>: its control separation in pooled SDs; <b>wells "
        "disagreeing</b>: wells flagged <code>org_disagree</code> (the two rescues differ beyond the control "
        "spread). Where the organization readout confirms a rescue, the embedding's orthogonal residual is "
        "not counted as off-target (docs/calls.md).</p>",
        "<table><tr><th>plate</th><th>ρ rescue</th><th>controls apart (SD)</th><th>wells disagreeing</th></tr>"
        f"{''.join(rows)}</table>",
        '<p class="note">Spearman ρ across wells of the CNN disease score with each organization feature '
        "(a healthy-like organization correlates negatively):</p>",
        f"<table><tr><th>feature</th>{head}</tr>{''.join(frows)}</table>",
    ]
    if ORG_RESCUE_PCT in wells and np.isfinite(wells[ORG_RESCUE_PCT]).any():
        caption = "CNN rescue % vs organization rescue % per well"
        parts.append(rep._figure(agreement_figure(wells), plots, "organization_agreement", caption))
        for plate in sorted(wells[PLATE].astype(str).unique()):
            pw = wells[wells[PLATE].astype(str) == plate]
            fig = rp.plate_heatmap(
                pw, ORG_RESCUE_PCT, f"{plate}: organization rescue %", "RdYlGn", -25, 125, "%"
            )
            caption = f"{plate}: organization rescue % ({feature})"
            parts.append(rep._figure(fig, plots, f"heatmap_org_{_safe(plate)}", caption, "heatmap"))
    return "".join(parts)


def failure(part: str, exc: BaseException) -> str:
    """`part failed: ExceptionType: message` (one line), as the report and the CLI show it."""
    message = " ".join(str(exc).split())[:300]
    return f"{part} failed: {type(exc).__name__}" + (f": {message}" if message else "")


def _problem_note(problems: list[str]) -> str:
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return f'<div class="note report-problems"><b>Report parts that failed:</b><ul>{items}</ul></div>'


def gradcam_section(
    model: Any, images: Mapping[str, np.ndarray], plots: Path, problems: list[str] | None = None
) -> str:
    """Grad-CAM overlays of the montage fields ('' when Grad-CAM is not installed; a note naming the
    exception when the model cannot be explained, also appended to `problems`)."""
    try:
        from fibroclass.models.gradcam import explain_field
    except ImportError:
        return ""
    import matplotlib.pyplot as plt

    overlays = {}
    for label, img in images.items():
        try:
            overlays[label] = explain_field(model, img)[1]
        except Exception as exc:  # noqa: BLE001 - explanations are optional: a model Grad-CAM cannot handle
            why = failure(f"Grad-CAM overlay of {label}", exc)
            if problems is not None:
                problems.append(why)
            return f'<p class="note">Grad-CAM overlays unavailable for this model ({html.escape(why)}).</p>'
    ncols = min(4, len(overlays))
    nrows = math.ceil(len(overlays) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, ov) in zip(axes.flat, overlays.items(), strict=False):
        ax.imshow(ov)
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    caption = "Grad-CAM over the same fields: evidence for the predicted class (bright = drives the call)"
    return rep._figure(fig, plots, "montage_gradcam", caption)


def write_report(
    out_dir: Path,
    fields: pd.DataFrame,
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    plate_qc: Mapping[str, Mapping],
    fits: Mapping[str, Fit4PL],
    organization: Mapping[str, dict],
    model: Any = None,
    gradcam: bool = True,
    problems: list[str] | None = None,
    well_embeddings: np.ndarray | None = None,
    assay_specs: Mapping[str, Any] | None = None,
    assay_fits: Mapping[str, Mapping[str, Fit4PL]] | None = None,
    thumbnails: int = 1536,
    viability_min_pct: float = 70.0,
    activity: pd.DataFrame | None = None,
) -> Path:
    """Write `out_dir/report.html` (interactive) and `out_dir/plots/` (PNGs + report_static.html);
    `model` (the scoring classifier) gives the channel order of the montage fields and, with `gradcam`,
    their Grad-CAM overlays; `thumbnails`: how many wells get a field thumbnail in the heatmaps. Parts that
    fail (montage, Grad-CAM) are named with their exception type in the report and appended to `problems`
    (for the CLI)."""
    problems = [] if problems is None else problems
    plots = Path(out_dir) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    channels = tuple(getattr(getattr(model, "spec", None), "channels", None) or ("actin", "nuclei"))
    try:
        images = rep.montage_images(fields, compounds, channels)
    except Exception as exc:  # noqa: BLE001 - a montage that cannot be read must not cost the report
        images = {}
        problems.append(failure("montage of representative fields", exc))
    extra = {
        "organization": ("Organization co-readout vs CNN", organization_section(wells, organization, plots))
    }
    if {str(q.get("z_prime_scale", "score")) for q in plate_qc.values()} == {"probability"}:
        note = "Z′ and SSMD are computed on p(disease) = sigmoid(well score) of the control wells."
        extra["controls"] = ("", f'<p class="note">{note}</p>')
    extra["activity"] = ("Phenotypic activity (mAP vs vehicle)", activity_section(activity, plots))
    if gradcam and model is not None and images:
        extra["montage"] = ("", gradcam_section(model, images, plots, problems))
    try:
        thumbs = well_thumbnails(fields, channels, thumbnails)
    except Exception as exc:  # noqa: BLE001 - thumbnails are optional: the heatmaps keep their numbers
        thumbs = {}
        problems.append(failure("field thumbnails", exc))
    if problems:
        extra["montage"] = ("", extra.get("montage", ("", ""))[1] + _problem_note(problems))
    qc = {"plates": dict(plate_qc)}
    static = rep.static_sections(out_dir, fields, wells, compounds, qc, fits, images)
    rep.render_report(
        out_dir, fields, wells, compounds, qc, fits, images, extra_sections=extra,
        filename="plots/report_static.html", sections=static,
    )  # fmt: skip
    return render_interactive_report(
        out_dir, fields, wells, compounds, qc, fits, well_embeddings, static["montage"][1], extra,
        assay_specs, assay_fits, thumbs, viability_min_pct,
    )  # fmt: skip


__all__ = ["agreement_figure", "failure", "gradcam_section", "organization_section", "write_report"]
