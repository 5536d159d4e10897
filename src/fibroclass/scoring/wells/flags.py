"""Well flags: short `;`-joined tokens saying why a well's numbers deserve caution (empty when clean)."""

from __future__ import annotations

import pandas as pd

from fibroclass.schema import FLAGS, N_FIELDS, N_FIELDS_USED, PLATE

NO_FIELDS_USED = "no_fields_used"  # every field failed QC: no score
FIELDS_FLAGGED = "fields_flagged"  # some fields failed QC: `fields_flagged=k/n`
PLATE_NO_CONTROLS = "plate_controls_unusable"  # the plate lacks a control group: no rescue
PLATE_QC_FAIL = "plate_qc_fail"  # the plate failed Z′ acceptance


def add_flag(wells: pd.DataFrame, mask: pd.Series, token: str | pd.Series) -> None:
    """Append `token` (a string, or one string per row) to the `flags` of the wells in `mask`, in place."""
    if FLAGS not in wells:
        wells[FLAGS] = ""
    tokens = token[mask] if isinstance(token, pd.Series) else token
    current = wells.loc[mask, FLAGS]
    wells.loc[mask, FLAGS] = current.where(current == "", current + ";") + tokens


def flag_wells(wells: pd.DataFrame, plate_qc: dict[str, dict]) -> pd.DataFrame:
    """Copy of `wells` with a `flags` column from field QC counts and the plate QC verdicts."""
    wells = wells.copy()
    wells[FLAGS] = ""
    used, total = wells[N_FIELDS_USED], wells[N_FIELDS]
    add_flag(wells, used == 0, NO_FIELDS_USED)
    partial = (used > 0) & (used < total)
    add_flag(wells, partial, FIELDS_FLAGGED + "=" + (total - used).astype(str) + "/" + total.astype(str))
    plate = wells[PLATE].astype(str)
    no_controls = {p for p, q in plate_qc.items() if not q.get("controls_ok", True)}
    add_flag(wells, plate.isin(no_controls), PLATE_NO_CONTROLS)
    failed = {p for p, q in plate_qc.items() if not q.get("pass", False)}
    add_flag(wells, plate.isin(failed), PLATE_QC_FAIL)
    return wells
