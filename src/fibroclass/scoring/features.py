"""Per-field features computed on the decoded field inside the scoring reader workers.

A field feature is a callable `fn(img, channels) -> {column: value}` where `img` is the decoded,
full-resolution (C, H, W) float32 field in [0, 1] (model channel order, before downsampling and tiling)
and `channels` the channel names. It runs in the DataLoader worker that decoded the field, so the
pixels are read once for the model and every readout (field QC metrics, nuclei counts, organization).

Register defaults by appending to `FIELD_FEATURES` (module-level functions or picklable objects, so
worker processes can receive them), or pass `field_features=[...]` to `scoring.pipeline.score_index`.
A feature's identity (`feature_id`) is part of the fingerprint of scored chunks: changing the list or
a feature's parameters makes resumed runs rescore instead of reusing stale parts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# img (C, H, W) float32 in [0, 1], channel names -> {column: value}
FieldFeature = Callable[[np.ndarray, Sequence[str]], Mapping[str, Any]]

# Features computed for every scored field unless `field_features` is given explicitly.
FIELD_FEATURES: list[FieldFeature] = []


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


def compute_features(
    img: np.ndarray, channels: Sequence[str], features: Sequence[FieldFeature]
) -> tuple[dict[str, Any], str]:
    """All features of one field, plus `"; "`-joined errors of the features that raised (their columns
    are then missing for this field and become NaN in the table)."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for fn in features:
        try:
            values.update(fn(img, channels))
        except Exception as exc:  # noqa: BLE001 - one odd field must not stop a plate
            errors.append(f"{feature_id(fn)}: {type(exc).__name__}: {exc}")
    return values, "; ".join(errors)


def _register_readout() -> None:
    """Field QC metrics, nuclei counts and the organization co-readout (`scoring.readout`)."""
    from fibroclass.scoring.field_readout import default_field_features

    FIELD_FEATURES.extend(default_field_features())


_register_readout()

__all__ = ["FIELD_FEATURES", "FieldFeature", "compute_features", "feature_id"]
