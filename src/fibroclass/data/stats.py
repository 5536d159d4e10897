"""Per-channel intensity statistics of the training split (for the classifier's normalization)."""

from __future__ import annotations

import numpy as np

from fibroclass.data.fields import FieldCache


def channel_stats(
    fields: FieldCache, max_fields: int = 64, seed: int = 0, min_std: float = 1e-6
) -> tuple[list[float], list[float]]:
    """Mean and std per channel over all pixels of up to `max_fields` fields sampled without replacement.

    Pass only training-split fields: the statistics become part of the model and must not see
    validation or test donors.
    """
    n = len(fields)
    if n == 0:
        raise ValueError("no fields to compute channel statistics from")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, size=min(n, max_fields), replace=False))
    total = sq = None
    count = 0
    for i in chosen:
        img = fields.get(int(i)).astype(np.float64)
        flat = img.reshape(img.shape[0], -1)
        s, q = flat.sum(axis=1), np.square(flat).sum(axis=1)
        total = s if total is None else total + s
        sq = q if sq is None else sq + q
        count += flat.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return [float(m) for m in mean], [float(max(s, min_std)) for s in std]
