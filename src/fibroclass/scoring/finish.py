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
4. `compound_readout`: 4PL per compound at viable doses and calls (scoring.compounds.calls), from the plates that
   passed QC only; a compound tested only on failed plates keeps its numbers but is not called.
5. Secondary readouts (`--assay` files, io.assays), when given: joined to the wells and normalized to each
   plate's controls (scoring.wells.assays), fitted and compared with the morphology rescue per compound
   (scoring.compounds.assays: `<readout>_rho`, `<readout>_discordant`).
6. `phenotypic_activity`: mAP of replicate wells against the vehicle wells in the embedding, per compound x
   dose (copairs; scoring.compounds.activity): `activity` (activity.csv) and `activity_*` columns of compounds.

Without a usable organization readout the evidence is the embedding `offtarget_z` alone. Thresholds:
the readout sections of the score config (configs/score/readout.yaml + `organization` in default.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fibroclass.io.assays import AssayData, AssaySpec
from fibroclass.schema import COMPOUND, OFFTARGET
from fibroclass.scoring.compounds.activity import ACTIVITY_COLUMNS, DOSE_COLUMNS, phenotypic_activity
from fibroclass.scoring.compounds.assays import assay_compound_readout
from fibroclass.scoring.compounds.calls import compound_readout
from fibroclass.scoring.compounds.doseresponse import Fit4PL
from fibroclass.scoring.config import ReadoutSettings
from fibroclass.scoring.wells.assays import attach_assays, normalize_assays
from fibroclass.scoring.wells.flags import add_flag, flag_wells
from fibroclass.scoring.wells.normalize import control_roles, query_mask
from fibroclass.scoring.wells.offtarget import FLAG_OFFTARGET, add_offtarget, offtarget_evidence
from fibroclass.scoring.wells.organization import FLAG_ORG_DISAGREE, ORG_DISCORDANCE_Z, organization_agreement


@dataclass
class Readout:
    """What `finish` adds: wells with readout columns and flags, compounds.csv rows, fits, per-plate notes."""

    wells: pd.DataFrame
    compounds: pd.DataFrame
    fits: dict[str, Fit4PL]
    organization: dict[str, dict]  # plate → agreement summary (also stored in plate_qc.json)
    warnings: list[str]
    activity: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DOSE_COLUMNS)))
    assays: dict[str, dict[str, dict]] = field(default_factory=dict)  # plate → readout → control summary
    assay_fits: dict[str, dict[str, Fit4PL]] = field(default_factory=dict)  # readout → compound → fit
    assay_specs: dict[str, AssaySpec] = field(default_factory=dict)


def finish(
    wells: pd.DataFrame,
    well_emb: np.ndarray,
    plate_qc: Mapping[str, Mapping],
    controls: Mapping[str, str],
    compounds_query: str,
    settings: ReadoutSettings,
    assays: AssayData | None = None,
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
    activity = pd.DataFrame(columns=list(DOSE_COLUMNS))
    if settings.activity.enabled:
        a = settings.activity
        treated = query_mask(wells, compounds_query, "compounds") if len(wells) else np.zeros(0, bool)
        act = phenotypic_activity(wells, well_emb, roles, treated, a.null_size, a.fdr, a.seed)
        activity = act.per_dose
        cols = list(compounds.columns)
        compounds = compounds.drop(columns=[c for c in ACTIVITY_COLUMNS if c in compounds])
        compounds = compounds.merge(act.per_compound, on=COMPOUND, how="left")[cols]
        if act.note:
            org_warnings.append(f"no phenotypic activity: {act.note}")
    ro = Readout(wells, compounds, fits, organization, warnings + org_warnings, activity=activity)
    if assays is not None and assays.specs:
        wells, assay_warnings = attach_assays(wells, assays)
        ro.wells, ro.assays = normalize_assays(wells, roles, assays.specs)
        ro.compounds, ro.assay_fits = assay_compound_readout(
            ro.wells, compounds, plate_qc, compounds_query, settings, assays.specs
        )
        ro.assay_specs = dict(assays.specs)
        ro.warnings += assay_warnings
    return ro


__all__ = ["Readout", "finish"]
