"""Public organization API: OrientationJ's coherency, orientation and energy maps, and the field readout.

    from fibroclass.organization import coherency
    c = coherency(tifffile.imread("field_w1.tif"), sigma=1.0)  # the map OrientationJ Analysis shows

Images are 2-D planes in their raw pixel values (as Fiji reads the file); `sigma` is OrientationJ's
"local window σ" in pixels (plugin default 1). See `fibroclass.measure.structure_tensor` for the
definition and `fibroclass.measure.organization.field_organization` for the per-field `org_*` readout.
"""

from fibroclass.measure.organization import (
    FIELD_SIGMA,
    WINDOW_UM,
    field_organization,
    foreground_mask,
    nuclei_stats,
    window_px,
)
from fibroclass.measure.structure_tensor import (
    EPSILON,
    coherency,
    energy,
    gradient,
    orientation,
    structure_tensor,
    window,
)

__all__ = [
    "EPSILON",
    "FIELD_SIGMA",
    "WINDOW_UM",
    "coherency",
    "energy",
    "field_organization",
    "foreground_mask",
    "gradient",
    "nuclei_stats",
    "orientation",
    "structure_tensor",
    "window",
    "window_px",
]
