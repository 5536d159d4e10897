"""Per-field features computed on the decoded field inside the scoring reader workers.

The readout's own features: `QCMetrics` (measure.field_qc), `NucleiCounts` (measure.nuclei: `nuclei_count`,
`nuclei_pyknotic`) and `Organization` (measure.organization: the `org_*` co-readout).

A field feature is a callable `fn(img, channels) -> {column: value}` where `img` is the decoded,
full-resolution (C, H, W) float32 field in [0, 1] (model channel order, before downsampling and tiling)
and `channels` the channel names. It runs in the DataLoader worker that decoded the field, so the
pixels are read once for the model and every readout (field QC metrics, nuclei counts, organization).

Register defaults by appending to `FIELD_FEATURES` (module-level functions or picklable objects, so
worker processes can receive them), or pass `field_features=[...]` to `scoring.pipeline.score_index`.
A feature's identity (`feature_id`) is part of the fingerprint of scored chunks: changing the list or
a feature's parameters makes resumed runs rescore instead of reusing stale parts.

A feature with a true `uses_context` attribute is called `fn(img, channels, context)`, where `context`
holds what the field index says about that field: `pixel_size_um` (NaN when unknown) and `bit_depth`
(None for float images); `Organization` uses them for its µm window and OrientationJ's raw-value scale.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from fibroclass.measure.field_qc import FieldQCParams, field_qc_metrics
from fibroclass.measure.nuclei import NucleiParams, count_nuclei
from fibroclass.measure.organization import FIELD_SIGMA, WINDOW_UM, field_organization, window_px
from fibroclass.measure.resample import downsample
from fibroclass.schema import (
    BIT_DEPTH,
    NUCLEI_COUNT,
    NUCLEI_PYKNOTIC,
    PIXEL_SIZE,
)
from fibroclass.scoring.config import ReadoutSettings

# img (C, H, W) float32 in [0, 1], channel names -> {column: value}
FieldFeature = Callable[[np.ndarray, Sequence[str]], Mapping[str, Any]]
FEATURE_ERROR = "feature_error"  # field column: features that raised on this field (empty when none)
REASON_FEATURE_ERROR = "feature_error"  # qc_reason entry: `feature_error: QCMetrics raised ValueError`

def feature_id(fn: FieldFeature) -> str:
    """Stable identity of a feature: its `feature_id` attribute, a partial's function and arguments,
    a function's qualified name, or the repr of a callable object (e.g. a dataclass with parameters)."""
    explicit = getattr(fn, "feature_id", None)
    if isinstance(explicit, str):
        return explicit
    if isinstance(fn, functools.partial):
        args = ", ".join([*map(repr, fn.args), *(f"{k}={v!r}" for k, v in sorted(fn.keywords.items()))])
        return f"{feature_id(fn.func)}({args})"
    name = getattr(fn, "__qualname__", None)
    if name is not None:
        return f"{getattr(fn, '__module__', '')}.{name}"
    return repr(fn)


def feature_name(fn: FieldFeature) -> str:
    """Short name of a feature for messages: `QCMetrics`, `count_cells` (a partial: its function's name)."""
    if isinstance(fn, functools.partial):
        return feature_name(fn.func)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return str(name).rsplit(".", 1)[-1]


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).replace(";", ",").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compute_features(
    img: np.ndarray,
    channels: Sequence[str],
    features: Sequence[FieldFeature],
    context: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """All features of one field, plus the errors of the features that raised: `"; "`-joined
    `Name: ExceptionType: message` entries (`parse_feature_errors` reads them back). A failed feature's
    columns are missing for this field (NaN in the table) and the field is flagged at merge
    (`scoring.fields.qc.plate_field_qc`).
    `context`: see the module docstring."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for fn in features:
        try:
            if getattr(fn, "uses_context", False):
                values.update(fn(img, channels, dict(context or {})))
            else:
                values.update(fn(img, channels))
        except Exception as exc:  # noqa: BLE001 - one odd field must not stop a plate; it is flagged instead
            errors.append(f"{feature_name(fn)}: {type(exc).__name__}: {_one_line(exc)}")
    return values, "; ".join(errors)


_ERROR_ENTRY = re.compile(r"^(?P<name>[\w.]+)(?:\(.*?\))?: (?P<type>[\w.]+)(?::|$)")


def parse_feature_errors(text: Any) -> list[tuple[str, str]]:
    """(feature name, exception type) of each entry of a `feature_error` value (empty when none)."""
    if not isinstance(text, str) or not text.strip():
        return []
    out = []
    for entry in text.split("; "):
        m = _ERROR_ENTRY.match(entry.strip())
        out.append((m["name"].rsplit(".", 1)[-1], m["type"]) if m else (entry.strip()[:40], "error"))
    return out


def feature_error_counts(values: Sequence[Any]) -> dict[str, dict[str, int]]:
    """{feature: {exception type: fields}} over `feature_error` values."""
    counts: dict[str, dict[str, int]] = {}
    for text in values:
        for name, kind in dict.fromkeys(parse_feature_errors(text)):
            counts.setdefault(name, {}).setdefault(kind, 0)
            counts[name][kind] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}


# FieldQCParams fields read by field_qc_metrics (the others only drive scoring.fields.qc.flag_fields).
_METRIC_PARAMS = (
    "sharpness_channel",
    "sharpness_max_side",
    "fg_smooth_sigma",
    "fg_background_px",
    "fg_min_snr",
    "fg_rel_level",
    "fg_rel_background",
    "saturation_level",
    "debris_factor",
    "debris_min_radius_px",
    "debris_min_area_px",
)


@dataclass(frozen=True)
class QCMetrics:
    """Field feature: `measure.field_qc.field_qc_metrics` (sharpness, foreground, debris, saturation, NaN fractions)."""

    params: FieldQCParams = field(default_factory=FieldQCParams)

    def __call__(self, img: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
        return field_qc_metrics(img, channels, self.params)

    @property
    def feature_id(self) -> str:
        """Identity for chunk fingerprints: only the parameters the metrics depend on, so changing a flag
        threshold (applied at merge) re-merges without rescoring the fields."""
        used = {k: v for k, v in asdict(self.params).items() if k in _METRIC_PARAMS}
        return f"{__name__}.QCMetrics({used})"


@dataclass(frozen=True)
class NucleiCounts:
    """Field feature: nuclei and condensed (pyknotic) nuclei counted on the nuclei channel."""

    params: NucleiParams = field(default_factory=NucleiParams)
    channel: str = "nuclei"

    def __call__(self, img: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
        if self.channel not in channels:
            return {}
        counts = count_nuclei(img[list(channels).index(self.channel)], self.params)
        return {NUCLEI_COUNT: float(counts.n), NUCLEI_PYKNOTIC: float(counts.n_pyknotic)}


@dataclass(frozen=True)
class Organization:
    """Field feature: actin organization co-readout (`org_*`: coherency, orientation, order, nuclei shape).

    OrientationJ's tensor with a local window σ of `window_um` µm, converted with the field's pixel size
    (and the downsampling to `max_side`); fields without a pixel size use `window_px` pixels of the
    analysed field instead. The [0, 1]-scaled pixels are measured on the file's raw scale (bit depth).
    """

    uses_context: ClassVar[bool] = True
    actin: str = "actin"
    nuclei: str = "nuclei"
    max_side: int = 512  # larger fields are block-mean downsampled first (cost grows with the pixel count)
    window_um: float = WINDOW_UM
    window_px: float = FIELD_SIGMA

    def __call__(
        self, img: np.ndarray, channels: Sequence[str], context: Mapping[str, Any] | None = None
    ) -> dict[str, float]:
        names = list(channels)
        if self.actin not in names:
            return {}
        context = context or {}
        factor = int(np.ceil(max(img.shape[1:]) / self.max_side)) if self.max_side > 0 else 1
        img = downsample(img, factor) if factor > 1 else img
        nuclei = img[names.index(self.nuclei)] if self.nuclei in names else None
        sigma = window_px(self.window_um, context.get(PIXEL_SIZE), factor, self.window_px)
        bits = context.get(BIT_DEPTH)
        scale = float(2 ** int(bits) - 1) if bits else 1.0  # float images: values as stored
        return field_organization(img[names.index(self.actin)], nuclei, sigma=sigma, intensity_scale=scale)


def default_field_features() -> list:
    """The readout's field features with default parameters (registered in `FIELD_FEATURES`)."""
    return [QCMetrics(), NucleiCounts(), Organization()]


def configure_features(features: Sequence, settings: ReadoutSettings) -> list:
    """`features` with the readout's own features given the config's field-QC and nuclei parameters."""
    out = []
    for fn in features:
        if isinstance(fn, QCMetrics):
            fn = replace(fn, params=settings.field_qc)
        elif isinstance(fn, NucleiCounts):
            fn = replace(fn, params=settings.nuclei)
        elif isinstance(fn, Organization):
            o = settings.organization
            fn = replace(fn, max_side=o.max_side, window_um=o.window_um, window_px=o.window_px)
        out.append(fn)
    return out


# Features computed for every scored field unless `field_features` is given explicitly.
FIELD_FEATURES: list[FieldFeature] = default_field_features()

__all__ = [
    "FIELD_FEATURES",
    "NUCLEI_PYKNOTIC",
    "FieldFeature",
    "NucleiCounts",
    "Organization",
    "QCMetrics",
    "FEATURE_ERROR",
    "compute_features",
    "feature_error_counts",
    "feature_name",
    "parse_feature_errors",
    "configure_features",
    "default_field_features",
    "feature_id",
]
