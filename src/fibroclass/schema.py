"""Column names, roles and labels shared by every module. Imports nothing from the package."""

from __future__ import annotations

# Keys of one field (CellProfiler / pycytominer style).
PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
ROW = "Metadata_Row"
COL = "Metadata_Col"
SITE = "Metadata_Site"
FIELD_KEYS = (PLATE, WELL, SITE)
WELL_KEYS = (PLATE, WELL)

# Default channel names, in model input order. The index has one `path_<channel>` column each.
CHANNELS = ("actin", "nuclei")


# Per-field acquisition metadata in the field index (io.pixels): bits of the camera data (8, 12 or 16;
# decided per plate) and the pixel size in µm (NaN when the export does not say).
BIT_DEPTH = "bit_depth"
PIXEL_SIZE = "pixel_size_um"


# Scoring indexes only (`build_index(lenient=True)`): why a discovered field cannot be read (a missing or
# duplicated channel file); "" for readable fields. Such fields become flagged rows instead of vanishing.
SKIP_REASON = "skip_reason"


def path_col(channel: str) -> str:
    """Name of the field-index column holding the file path of `channel`."""
    return f"path_{channel}"


# Plate-map contract (DESIGN.md).
PM_PLATE = "plate"
PM_WELL = "well"
ROLE = "role"
COMPOUND = "compound"
CONC = "concentration_uM"
DONOR = "donor"
GENOTYPE = "genotype"
PLATEMAP_REQUIRED = (PM_WELL, ROLE, COMPOUND, CONC)

ROLE_HEALTHY = "healthy"
ROLE_DISEASE = "disease"
ROLE_REFERENCE = "reference"
ROLE_TREATMENT = "treatment"
ROLE_EMPTY = "empty"
ROLES = (ROLE_HEALTHY, ROLE_DISEASE, ROLE_REFERENCE, ROLE_TREATMENT, ROLE_EMPTY)

# Binary label used for training: 1 = disease (GoF), 0 = healthy.
LABEL = "label"
LABEL_NAMES = ("healthy", "disease")
ROLE_TO_LABEL = {ROLE_HEALTHY: 0, ROLE_DISEASE: 1}

SPLIT = "split"
SPLITS = ("train", "val", "test")

# Score outputs.
P_DISEASE = "p_disease"
DISEASE_SCORE = "disease_score"
NUCLEI_COUNT = "nuclei_count"
NUCLEI_PYKNOTIC = "nuclei_pyknotic"  # field: condensed (small, bright) nuclei among `nuclei_count`
PYKNOTIC_PCT = "pyknotic_pct"  # well: 100 · pyknotic / all nuclei over the fields used
QC_PASS = "qc_pass"
QC_REASON = "qc_reason"
RESCUE_PCT = "rescue_pct"
VIABILITY_PCT = "viability_pct"
OFFTARGET = "offtarget"
FLAGS = "flags"
N_FIELDS = "n_fields"
N_FIELDS_USED = "n_fields_used"
CALLS = ("hit", "inactive", "toxic", "off_target", "inconclusive")
