"""Self-contained `report.html` of a scoring run: plate-QC banner, compound calls, dose-response panels,
plate heatmaps, control distributions and a field montage.

Plots are PNGs written to `out_dir/plots/` and embedded base64 in the HTML, so the one file opens in any
browser, offline. Section ids (for links and tests): `plate-qc`, `compounds`, `dose-response`,
`heatmaps`, `controls`, `montage`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fibroclass import __version__
from fibroclass.errors import FibroclassError
from fibroclass.io.images import read_field
from fibroclass.schema import (
    CHANNELS,
    COMPOUND,
    CONC,
    DISEASE_SCORE,
    PLATE,
    QC_PASS,
    RESCUE_PCT,
    ROLE,
    ROLE_DISEASE,
    ROLE_HEALTHY,
    ROLE_REFERENCE,
    ROLE_TREATMENT,
    VIABILITY_PCT,
    WELL,
    path_col,
)
from fibroclass.scoring.compounds.doseresponse import Fit4PL
from fibroclass.scoring.report import plots as rp

SECTIONS = ("plate-qc", "compounds", "dose-response", "heatmaps", "controls", "montage")
COMPOUND_TABLE_COLUMNS = (
    ("compound", "compound"),
    ("call", "call"),
    ("ec50_uM", "EC50 (µM)"),
    ("ec50_ci_low_uM", "CI low"),
    ("ec50_ci_high_uM", "CI high"),
    ("emax_pct", "Emax %"),
    ("hill", "Hill"),
    ("max_rescue_pct", "max rescue %"),
    ("min_viability_pct", "min viability %"),
    ("max_offtarget_z", "max off-target z"),
    ("call_reason", "why"),
)


def _png(fig: Figure, path: Path) -> str:
    """Save `fig` as PNG at `path` and return it base64-encoded; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


def _figure(fig: Figure, plots: Path, name: str, caption: str, css: str = "") -> str:
    b64 = _png(fig, plots / f"{name}.png")
    cls = f' class="{css}"' if css else ""
    return (
        f'<figure id="fig-{html.escape(name)}"{cls}><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _plates_of(plate_qc: Mapping) -> dict[str, dict]:
    """Accept `plate_qc.json` as written (`{"plates": {...}}`) or the per-plate mapping itself."""
    plates = plate_qc.get("plates", plate_qc) if isinstance(plate_qc, Mapping) else {}
    return {str(k): dict(v) for k, v in plates.items() if isinstance(v, Mapping)}


def _num(v: object, fmt: str = "{:.2f}") -> str:
    return fmt.format(v) if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def _banner(plates: dict[str, dict]) -> str:
    if not plates:
        return '<div class="banner fail"><b>Plate QC: no plate statistics</b></div>'
    failed = [p for p, q in plates.items() if not q.get("pass")]
    cls, word = ("fail", "FAIL") if failed else ("pass", "PASS")
    items = []
    for plate, q in sorted(plates.items()):
        verdict = "PASS" if q.get("pass") else "FAIL"
        reasons = "; ".join(str(r) for r in q.get("reasons") or [])
        flagged = q.get("n_fields_flagged")
        fields = f", {flagged}/{q.get('n_fields')} fields flagged" if flagged is not None else ""
        text = f"{plate}: <b>{verdict}</b> — Z′ {_num(q.get('z_prime'))}, SSMD {_num(q.get('ssmd'))}{fields}"
        if reasons:
            text += f" — {html.escape(reasons)}"
        items.append(f"<li>{text}</li>")
    head = (
        f"{len(failed)} of {len(plates)} plate(s) failed" if failed else f"all {len(plates)} plate(s) passed"
    )
    return f'<div class="banner {cls}"><b>Plate QC: {word}</b> ({head})<ul>{"".join(items)}</ul></div>'


def _compound_table(compounds: pd.DataFrame) -> str:
    cols = [(c, label) for c, label in COMPOUND_TABLE_COLUMNS if c in compounds]
    if not cols or compounds.empty:
        return '<p class="note">No compounds.</p>'
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    rows = []
    for _, r in compounds.iterrows():
        cells = []
        for c, _ in cols:
            v = r[c]
            if c == "call":
                cells.append(
                    f'<td class="text"><span class="call {html.escape(str(v))}">{html.escape(str(v))}</span></td>'
                )
            elif c == "ec50_uM" and isinstance(v, float) and math.isfinite(v):
                q = str(r.get("ec50_qualifier", "") or "")
                cells.append(f"<td>{html.escape(q)} {v:.3g}</td>")
            elif isinstance(v, float | np.floating):
                cells.append(f"<td>{_num(float(v), '{:.3g}')}</td>")
            else:
                cells.append(f'<td class="text">{html.escape(str(v))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _qc_fail_fraction(fields: pd.DataFrame) -> pd.DataFrame:
    """Per well: fraction of fields failing QC."""
    if fields.empty or QC_PASS not in fields:
        return pd.DataFrame(columns=[PLATE, WELL, "qc_fail_frac"])
    failed = ~fields[QC_PASS].astype(bool)
    out = failed.groupby([fields[PLATE].astype(str), fields[WELL].astype(str)]).mean()
    return out.rename("qc_fail_frac").reset_index()


def _heatmaps(fields: pd.DataFrame, wells: pd.DataFrame, plots: Path) -> str:
    parts = []
    qc = _qc_fail_fraction(fields)
    for plate in sorted(wells[PLATE].astype(str).unique()):
        pw = wells[wells[PLATE].astype(str) == plate]
        safe = "".join(ch if ch.isalnum() else "_" for ch in plate)
        if RESCUE_PCT in pw:
            fig = rp.plate_heatmap(pw, RESCUE_PCT, f"{plate}: rescue %", "RdYlGn", -25, 125, "rescue %")
            parts.append(
                _figure(fig, plots, f"heatmap_rescue_{safe}", f"{plate}: rescue % per well", "heatmap")
            )
        if VIABILITY_PCT in pw:
            fig = rp.plate_heatmap(pw, VIABILITY_PCT, f"{plate}: viability %", "magma", 0, 130, "viability %")
            parts.append(
                _figure(fig, plots, f"heatmap_viability_{safe}", f"{plate}: viability % per well", "heatmap")
            )
        qp = qc[qc[PLATE] == plate].rename(columns={PLATE: "_plate"})
        if len(qp):
            qp = qp.merge(pw[[WELL, ROLE]] if ROLE in pw else pw[[WELL]], on=WELL, how="left")
            fig = rp.plate_heatmap(
                qp, "qc_fail_frac", f"{plate}: fields failing QC", "Reds", 0, 1, "fraction"
            )
            parts.append(
                _figure(
                    fig, plots, f"heatmap_qc_{safe}", f"{plate}: fraction of fields failing QC", "heatmap"
                )
            )
    return "".join(parts) or '<p class="note">No wells.</p>'


def _dose_response(
    wells: pd.DataFrame, compounds: pd.DataFrame, fits: Mapping[str, Fit4PL], plots: Path
) -> str:
    mask = wells[ROLE].isin([ROLE_TREATMENT, ROLE_REFERENCE]) if ROLE in wells else True
    treated = wells[mask & (pd.to_numeric(wells[CONC], errors="coerce") > 0)]
    if COMPOUND in compounds and len(compounds):
        treated = treated[treated[COMPOUND].astype(str).isin(compounds[COMPOUND].astype(str))]
    if treated.empty:
        return '<p class="note">No treated wells.</p>'
    calls = (
        dict(zip(compounds[COMPOUND].astype(str), compounds["call"].astype(str), strict=True))
        if "call" in compounds
        else {}
    )
    fig = rp.dose_response_grid(treated, fits, calls)
    caption = (
        "Rescue % per well (filled: viable dose, hollow: viability < 70%), viability % (grey triangles), "
        "4PL fit with bootstrap 95% band, EC50 (dashed) and its CI (shaded)."
    )
    return _figure(fig, plots, "dose_response", caption)


def _controls(wells: pd.DataFrame, plates: dict[str, dict], plots: Path) -> str:
    if ROLE not in wells or DISEASE_SCORE not in wells:
        return '<p class="note">No control scores.</p>'
    fig = rp.control_distributions(wells, PLATE, plates)
    return _figure(fig, plots, "controls", "Well disease scores of healthy, disease and reference controls")


def _montage(images: Mapping[str, np.ndarray] | None, plots: Path) -> str:
    if not images:
        return '<p class="note">No representative fields were given.</p>'
    fig = rp.montage(images)
    return _figure(
        fig, plots, "montage", "Representative fields (actin green, nuclei magenta, contrast-stretched)"
    )


def static_sections(
    out_dir: str | Path,
    fields: pd.DataFrame,
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    plate_qc: Mapping,
    fits: Mapping[str, Fit4PL] | None = None,
    montage_images: Mapping[str, np.ndarray] | None = None,
) -> dict[str, tuple[str, str]]:
    """Section id → (title, HTML with embedded PNGs); writes every PNG to `out_dir/plots/`."""
    for col in (PLATE, WELL):
        if col not in wells:
            raise FibroclassError(f"report: wells table lacks column '{col}'")
    plots = Path(out_dir) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plates = _plates_of(plate_qc)
    fits = fits or {}
    return {
        "plate-qc": ("Plate QC", _banner(plates)),
        "compounds": ("Compounds", _compound_table(compounds)),
        "dose-response": ("Dose response", _dose_response(wells, compounds, fits, plots)),
        "heatmaps": ("Plate heatmaps", _heatmaps(fields, wells, plots)),
        "controls": ("Control distributions", _controls(wells, plates, plots)),
        "montage": ("Representative fields", _montage(montage_images, plots)),
    }


def render_report(
    out_dir: str | Path,
    fields: pd.DataFrame,
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    plate_qc: Mapping,
    fits: Mapping[str, Fit4PL] | None = None,
    montage_images: Mapping[str, np.ndarray] | None = None,
    title: str = "fibroclass screening report",
    extra_sections: Mapping[str, tuple[str, str]] | None = None,
    filename: str = "report.html",
    sections: Mapping[str, tuple[str, str]] | None = None,
) -> Path:
    """Write `out_dir/<filename>` (self-contained, no JavaScript) and `out_dir/plots/*.png`; returns the
    HTML path.

    `wells` needs `Metadata_Plate`, `Metadata_Well`; rescue/viability/role/compound/concentration/
    disease-score columns are plotted when present. `plate_qc` is `plate_qc.json` (or its `plates`).
    `extra_sections`: section id → (title, HTML); an existing id gets the HTML appended, a new one is
    added at the end. `sections`: those of `static_sections`, when already made.
    """
    out = Path(out_dir)
    if sections is None:
        sections = static_sections(out, fields, wells, compounds, plate_qc, fits, montage_images)
    sections = dict(sections)
    for sid, (t, content) in (extra_sections or {}).items():
        sections[sid] = (sections[sid][0], sections[sid][1] + content) if sid in sections else (t, content)
    body = "".join(
        f'<section id="{sid}"><h2>{html.escape(t)}</h2>{content}</section>'
        for sid, (t, content) in sections.items()
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_plates = wells[PLATE].nunique()
    meta = (
        f"fibroclass {__version__} · {stamp} · {n_plates} plate(s), {len(wells)} wells, {len(fields)} fields"
    )
    template = Template(
        resources.files("fibroclass.scoring.report").joinpath("templates/report.html").read_text("utf-8")
    )
    page = template.substitute(title=html.escape(title), meta=html.escape(meta), body=body)
    path = out / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def representative_fields(
    fields: pd.DataFrame, compounds: pd.DataFrame | None = None, per_group: int = 1
) -> dict[str, pd.Series]:
    """Label → field row: a healthy control, a disease control and the top dose of each compound.

    Among QC-passing fields of the group, the one(s) whose disease score is closest to the group median.
    """
    ok = fields[fields[QC_PASS].astype(bool)] if QC_PASS in fields else fields
    groups: list[tuple[str, pd.DataFrame]] = []
    for role, label in ((ROLE_HEALTHY, "healthy control"), (ROLE_DISEASE, "disease control")):
        if ROLE in ok:
            groups.append((label, ok[ok[ROLE] == role]))
    names = (
        compounds[COMPOUND].astype(str).tolist() if compounds is not None and COMPOUND in compounds else []
    )
    for name in names:
        sub = ok[(ok[COMPOUND].astype(str) == name) & (pd.to_numeric(ok[CONC], errors="coerce") > 0)]
        if len(sub):
            top = sub[CONC].max()
            groups.append((f"{name} {top:g} µM", sub[sub[CONC] == top]))
    chosen: dict[str, pd.Series] = {}
    for label, sub in groups:
        if sub.empty:
            continue
        if DISEASE_SCORE in sub and sub[DISEASE_SCORE].notna().any():
            order = (sub[DISEASE_SCORE] - sub[DISEASE_SCORE].median()).abs().sort_values().index
        else:
            order = sub.index
        for k, idx in enumerate(order[:per_group]):
            chosen[label if per_group == 1 else f"{label} #{k + 1}"] = sub.loc[idx]
    return chosen


def montage_images(
    fields: pd.DataFrame, compounds: pd.DataFrame | None = None, channels: Sequence[str] = CHANNELS
) -> dict[str, np.ndarray]:
    """Read the `representative_fields` from disk (needs `path_<channel>` columns) as (C, H, W) arrays."""
    missing = [path_col(c) for c in channels if path_col(c) not in fields]
    if missing:
        raise FibroclassError(f"report montage: fields table lacks column(s) {missing}")
    return {
        label: read_field([row[path_col(c)] for c in channels])
        for label, row in representative_fields(fields, compounds).items()
    }
