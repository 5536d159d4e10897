"""Post-aggregation screening readout: off-target, organization agreement, 4PL fits and compound calls.

`finish` runs on the normalized well table (rescue %, viability %) and the plate QC verdicts:

1. `add_offtarget`: per plate, each well's shift from the disease-control centroid in the classifier
   embedding splits into the part along the disease axis (`on_target_pct`) and the orthogonal rest in
   units of control spread (`offtarget_z`, offtarget.disease_axis_decomposition).
2. `organization_agreement`: the organization co-readout (`organization.feature`, e.g. actin coherency)
   normalized to the controls like rescue (`org_rescue_pct`); per plate Spearman ρ across wells vs the
   CNN rescue (warning below `min_rho`); per well the discordance CNN − organization rescue in units of
   its spread over the control wells (`org_discordance_z`, flag `org_disagree` when |z| ≥ `disagree_z`).
3. `offtarget_evidence`: what the calls use (`offtarget_evidence_z`, boolean `offtarget`). Intermediate
   phenotypes do not lie on the straight line between the control centroids (the rescue path is curved
   in the embedding), so a rescuing compound's mid doses show an orthogonal residual. Where the
   organization readout independently confirms the rescue (significant organization rescue, concordant
   with the CNN rescue), the embedding residual is attributed to that curved path; elsewhere it counts.
   A CNN rescue the organization readout does not show (positive discordance) counts as well: the
   classifier reads as rescue a morphology that does not restore the organization phenotype.
4. `compound_readout`: 4PL per compound at viable doses and calls (scoring.calls), from the plates that
   passed QC only; a compound tested only on failed plates keeps its numbers but is not called.

Without a usable organization readout the evidence is the embedding `offtarget_z` alone. Thresholds:
the readout sections of the score config (configs/score/readout.yaml + `organization` in default.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fibroclass.errors import FibroclassError
from fibroclass.organization import ORG_COHERENCY, ORG_ORIENTATION_DEG
from fibroclass.schema import COMPOUND, OFFTARGET, PLATE, RESCUE_PCT, ROLE, ROLE_DISEASE, ROLE_HEALTHY
from fibroclass.scoring.calls import CALL, CALL_REASON, ReadoutConfig, call_compounds
from fibroclass.scoring.compounds import compound_table
from fibroclass.scoring.doseresponse import Fit4PL, fit_compounds
from fibroclass.scoring.field_readout import ORG_PREFIX
from fibroclass.scoring.flags import add_flag, flag_wells
from fibroclass.scoring.normalize import query_mask
from fibroclass.scoring.offtarget import OFFTARGET_Z, ON_TARGET_PCT, disease_axis_decomposition

ORG_RESCUE_PCT = "org_rescue_pct"  # well: the organization feature normalized like rescue_pct
ORG_DISCORDANCE_Z = "org_discordance_z"  # well: (CNN rescue − organization rescue) in control-spread units
ORG_CONFIRMS = "org_confirms"  # well: the organization readout confirms the CNN rescue
OFFTARGET_EVIDENCE_Z = "offtarget_evidence_z"  # well: off-target evidence used by the calls
FLAG_OFFTARGET = "off_target"  # well flag: offtarget_evidence_z ≥ offtarget.z_min
FLAG_ORG_DISAGREE = "org_disagree"  # well flag: |org_discordance_z| ≥ organization.disagree_z
NOT_CALLED = "not called: plate(s) {plates} failed QC"


# -- configuration -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrganizationParams:
    """The `organization` section: the organization co-readout against the CNN (configs/score/default.yaml)."""

    feature: str = ORG_COHERENCY  # org_* column whose well mean is normalized to the controls
    min_rho: float = 0.5  # plate warning below this Spearman ρ (CNN rescue vs organization rescue)
    disagree_z: float = 3.0  # well flag / no confirmation when |discordance z| reaches this
    min_separation: float = 2.0  # controls must differ by this many pooled SDs on `feature`
    min_spread_pct: float = 5.0  # floor (% points) on the control spreads used for the z-scores
    confirm_offtarget: bool = True  # a confirmed rescue explains the embedding's orthogonal residual
    max_side: int = 512  # fields larger than this (px) are block-mean downsampled for the org_* features

    @classmethod
    def from_dict(cls, d: Mapping | None) -> OrganizationParams:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise FibroclassError(f"unknown key(s) {sorted(unknown)} in config section 'organization'")
        if not str(d.get("feature", cls.feature)).startswith(ORG_PREFIX):
            raise FibroclassError(f"organization.feature must name an org_* column, got {d['feature']!r}")
        return cls(**d)


READOUT_SECTIONS = (*(f.name for f in fields(ReadoutConfig)), "organization")


@dataclass(frozen=True)
class ReadoutSettings:
    """Parsed readout sections of a score config (`ScoreConfig.readout`, a plain dict of sections)."""

    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    organization: OrganizationParams = field(default_factory=OrganizationParams)

    @classmethod
    def from_dict(cls, raw: Mapping | None, source: str = "score config") -> ReadoutSettings:
        raw = dict(raw or {})
        unknown = set(raw) - set(READOUT_SECTIONS)
        if unknown:
            raise FibroclassError(f"{source}: unknown readout section(s) {sorted(unknown)}")
        org = raw.pop("organization", None)
        if org is not None and not isinstance(org, Mapping):
            raise FibroclassError(f"{source}: section 'organization' must be a mapping")
        try:
            return cls(ReadoutConfig.from_dict(raw, source), OrganizationParams.from_dict(org))
        except (TypeError, FibroclassError) as exc:
            text = str(exc)
            raise FibroclassError(text if text.startswith(source) else f"{source}: {text}") from exc

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Every section with every key (defaults filled in): `from_dict(to_dict())` is the same."""
        sections = {f.name: asdict(getattr(self.readout, f.name)) for f in fields(self.readout)}
        return {**sections, "organization": asdict(self.organization)}


@dataclass
class Readout:
    """What `finish` adds: wells with readout columns and flags, compounds.csv rows, fits, per-plate notes."""

    wells: pd.DataFrame
    compounds: pd.DataFrame
    fits: dict[str, Fit4PL]
    organization: dict[str, dict]  # plate → agreement summary (also stored in plate_qc.json)
    warnings: list[str]


# -- steps ------------------------------------------------------------------------------------------------
def control_roles(wells: pd.DataFrame, controls: Mapping[str, str]) -> pd.Series:
    """`healthy` / `disease` for the wells matching the config's control queries, else the well's role."""
    base = wells[ROLE].astype(str) if ROLE in wells else pd.Series("", index=wells.index)
    roles = pd.Series(np.where(base.isin([ROLE_HEALTHY, ROLE_DISEASE]), "", base), index=wells.index)
    roles[query_mask(wells, controls["healthy"], "healthy")] = ROLE_HEALTHY
    roles[query_mask(wells, controls["disease"], "disease")] = ROLE_DISEASE
    return roles


def add_offtarget(
    wells: pd.DataFrame, well_emb: np.ndarray, roles: pd.Series, settings: ReadoutSettings
) -> tuple[pd.DataFrame, list[str]]:
    """`on_target_pct` and `offtarget_z` per well, plate by plate (NaN, with a warning, for a plate whose
    controls cannot define the disease axis or a model without embeddings)."""
    wells = wells.copy()
    on, z = np.full(len(wells), np.nan), np.full(len(wells), np.nan)
    emb = np.asarray(well_emb, dtype=float)
    p = settings.readout.offtarget
    warnings = []
    for plate, idx in wells.groupby(PLATE, sort=False).indices.items():
        if emb.ndim != 2 or emb.shape[1] == 0:
            warnings.append(f"plate {plate}: no off-target readout (the model gives no embedding)")
            continue
        try:
            dec = disease_axis_decomposition(
                emb[idx], roles.iloc[idx], wells[PLATE].iloc[idx], p.z_min, p.min_spread_frac
            )
        except FibroclassError as exc:
            warnings.append(f"no off-target readout: {exc}")
            continue
        on[idx], z[idx] = dec[ON_TARGET_PCT].to_numpy(), dec[OFFTARGET_Z].to_numpy()
    wells[ON_TARGET_PCT], wells[OFFTARGET_Z] = on, z
    return wells, warnings


def _robust(x: np.ndarray, floor: float) -> tuple[float, float]:
    """(median, max(1.4826·MAD, floor)) of the finite values (NaN median when none)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, floor
    med = float(np.median(x))
    return med, max(1.4826 * float(np.median(np.abs(x - med))), floor)


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def organization_agreement(
    wells: pd.DataFrame, roles: pd.Series, settings: ReadoutSettings
) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    """`org_rescue_pct`, `org_discordance_z`, `org_confirms` per well; per-plate summary and warnings.

    Summary per plate: `feature`, `separation_sd` (controls apart in pooled SDs), `rho_rescue` (Spearman
    across wells, CNN vs organization rescue), `agree` (ρ ≥ `min_rho`), `n_disagree` (wells flagged) and
    `rho_disease_score` (well disease score vs every `org_*` column).
    """
    p = settings.organization
    z_min = settings.readout.offtarget.z_min
    wells = wells.copy()
    org_rescue = np.full(len(wells), np.nan)
    disc = np.full(len(wells), np.nan)
    confirms = np.zeros(len(wells), dtype=bool)
    summary: dict[str, dict] = {}
    warnings: list[str] = []
    if p.feature not in wells:
        wells[ORG_RESCUE_PCT], wells[ORG_DISCORDANCE_Z], wells[ORG_CONFIRMS] = org_rescue, disc, confirms
        return wells, summary, warnings
    skip = (ORG_RESCUE_PCT, ORG_ORIENTATION_DEG)  # an axial angle has no rank order
    org_cols = [c for c in wells.columns if c.startswith(ORG_PREFIX) and c not in skip]
    value = wells[p.feature].to_numpy(float)
    rescue = wells[RESCUE_PCT].to_numpy(float) if RESCUE_PCT in wells else np.full(len(wells), np.nan)
    score = wells["disease_score"].to_numpy(float) if "disease_score" in wells else rescue
    for plate, idx in wells.groupby(PLATE, sort=False).indices.items():
        role = roles.iloc[idx].to_numpy()
        entry: dict[str, Any] = {"feature": p.feature, "rho_rescue": math.nan, "agree": None, "n_disagree": 0}
        entry["rho_disease_score"] = {
            c: _rank_corr(score[idx], wells[c].to_numpy(float)[idx]) for c in org_cols
        }
        summary[str(plate)] = entry
        h, d = value[idx][role == ROLE_HEALTHY], value[idx][role == ROLE_DISEASE]
        h, d = h[np.isfinite(h)], d[np.isfinite(d)]
        if len(h) < 2 or len(d) < 2:
            warnings.append(
                f"plate {plate}: too few control wells with {p.feature} for the organization readout"
            )
            continue
        gap = float(h.mean() - d.mean())
        pooled = math.sqrt((h.var(ddof=1) + d.var(ddof=1)) / 2.0)
        entry["separation_sd"] = abs(gap) / pooled if pooled > 0 else math.inf
        if not entry["separation_sd"] >= p.min_separation:
            warnings.append(
                f"plate {plate}: {p.feature} does not separate the controls "
                f"({entry['separation_sd']:.1f} SD < {p.min_separation:g}); no organization agreement"
            )
            continue
        org = 100.0 * (value[idx] - d.mean()) / gap
        org_rescue[idx] = org
        diff = rescue[idx] - org
        ctrl = np.isin(role, [ROLE_HEALTHY, ROLE_DISEASE])
        med, spread = _robust(diff[ctrl], p.min_spread_pct)
        disc[idx] = (diff - med) / spread
        _, d_spread = _robust(org[role == ROLE_DISEASE], p.min_spread_pct)
        confirms[idx] = (org >= z_min * d_spread) & (np.abs(disc[idx]) < p.disagree_z)
        rho = _rank_corr(rescue[idx], org)
        entry["rho_rescue"], entry["agree"] = rho, not (math.isfinite(rho) and rho < p.min_rho)
        if not entry["agree"]:
            warnings.append(
                f"plate {plate}: CNN rescue and {p.feature} rescue disagree across wells "
                f"(Spearman ρ={rho:.2f} < {p.min_rho:g})"
            )
    wells[ORG_RESCUE_PCT], wells[ORG_DISCORDANCE_Z], wells[ORG_CONFIRMS] = org_rescue, disc, confirms
    disagree = np.abs(np.nan_to_num(disc)) >= p.disagree_z
    for plate, n in pd.Series(disagree).groupby(wells[PLATE].astype(str).to_numpy()).sum().items():
        if plate in summary:
            summary[plate]["n_disagree"] = int(n)
    return wells, summary, warnings


def offtarget_evidence(wells: pd.DataFrame, settings: ReadoutSettings) -> pd.DataFrame:
    """`offtarget_evidence_z` (what the calls use) and the boolean `offtarget` per well (module docstring, 3)."""
    wells = wells.copy()
    nan = np.full(len(wells), np.nan)
    emb = wells[OFFTARGET_Z].to_numpy(float) if OFFTARGET_Z in wells else nan
    disc = wells[ORG_DISCORDANCE_Z].to_numpy(float) if ORG_DISCORDANCE_Z in wells else nan
    evidence = np.fmax(emb, disc)  # NaN only where both are; negative discordance is no evidence
    if settings.organization.confirm_offtarget and ORG_CONFIRMS in wells:
        evidence = np.where(wells[ORG_CONFIRMS].to_numpy(bool), disc, evidence)
    wells[OFFTARGET_EVIDENCE_Z] = evidence
    wells[OFFTARGET] = np.nan_to_num(evidence, nan=-np.inf) >= settings.readout.offtarget.z_min
    return wells


def _failed_plates(plate_qc: Mapping[str, Mapping]) -> set[str]:
    return {str(p) for p, q in plate_qc.items() if not q.get("pass", False)}


def compound_readout(
    wells: pd.DataFrame, plate_qc: Mapping[str, Mapping], compounds_query: str, settings: ReadoutSettings
) -> tuple[pd.DataFrame, dict[str, Fit4PL]]:
    """compounds.csv rows: `compounds.compound_table` filled with 4PL fits (viable doses) and calls.

    Only wells of plates that passed QC count. A compound tested only on failed plates keeps its fit and
    numbers, but its call is `inconclusive`, the reason naming the plate and what the call would be.
    The calls see `offtarget_evidence_z` as their off-target z.
    """
    base = compound_table(wells, compounds_query)
    ro = settings.readout
    treated = wells[query_mask(wells, compounds_query, "compounds")] if len(wells) else wells
    if OFFTARGET_EVIDENCE_Z in treated:
        treated = treated.assign(**{OFFTARGET_Z: treated[OFFTARGET_EVIDENCE_Z]})
    on_failed = treated[PLATE].astype(str).isin(_failed_plates(plate_qc))
    trusted_names = set(treated.loc[~on_failed, COMPOUND])
    parts = (
        (treated[~on_failed], True),
        (treated[on_failed & ~treated[COMPOUND].isin(trusted_names)], False),
    )
    fits: dict[str, Fit4PL] = {}
    tables = []
    for part, trusted in parts:
        if part.empty:
            continue
        part_fits = fit_compounds(part, ro.dose_response, mask=pd.Series(True, index=part.index))
        calls = call_compounds(part, part_fits, ro.calls)
        if not trusted:
            plates = part.groupby(COMPOUND)[PLATE].agg(lambda s: ", ".join(sorted(set(map(str, s)))))
            calls[CALL_REASON] = [
                f"{NOT_CALLED.format(plates=plates.get(c, '?'))}; would be {w}: {r}"
                for c, w, r in zip(calls[COMPOUND], calls[CALL], calls[CALL_REASON], strict=True)
            ]
            calls[CALL] = "inconclusive"
        fits.update(part_fits)
        tables.append(calls)
    if not tables:
        return base, fits
    calls = pd.concat(tables, ignore_index=True).set_index(COMPOUND)
    rest = base.set_index(COMPOUND)
    rest = rest[~rest.index.isin(calls.index)]  # not callable (e.g. no usable rescue): placeholders stay
    out = pd.concat([calls, rest]).reindex(base[COMPOUND]).reset_index()
    return out[list(base.columns) + [c for c in out.columns if c not in base.columns]], fits


def finish(
    wells: pd.DataFrame,
    well_emb: np.ndarray,
    plate_qc: Mapping[str, Mapping],
    controls: Mapping[str, str],
    compounds_query: str,
    settings: ReadoutSettings,
) -> Readout:
    """Every post-aggregation step on the normalized wells (see the module docstring); sets `flags`."""
    wells = wells.reset_index(drop=True)
    roles = control_roles(wells, controls)
    wells, warnings = add_offtarget(wells, well_emb, roles, settings)
    wells, organization, org_warnings = organization_agreement(wells, roles, settings)
    wells = flag_wells(offtarget_evidence(wells, settings), dict(plate_qc))
    add_flag(wells, wells[OFFTARGET].astype(bool), FLAG_OFFTARGET)
    if ORG_DISCORDANCE_Z in wells:
        disagree = wells[ORG_DISCORDANCE_Z].abs() >= settings.organization.disagree_z
        add_flag(wells, disagree.fillna(False).astype(bool), FLAG_ORG_DISAGREE)
    compounds, fits = compound_readout(wells, plate_qc, compounds_query, settings)
    return Readout(wells, compounds, fits, organization, warnings + org_warnings)


__all__ = [
    "FLAG_OFFTARGET",
    "FLAG_ORG_DISAGREE",
    "OFFTARGET_EVIDENCE_Z",
    "ORG_CONFIRMS",
    "ORG_DISCORDANCE_Z",
    "ORG_RESCUE_PCT",
    "OrganizationParams",
    "Readout",
    "ReadoutSettings",
    "add_offtarget",
    "compound_readout",
    "control_roles",
    "finish",
    "offtarget_evidence",
    "organization_agreement",
]
