"""`FieldReader`: one field's pixels as training and scoring read them: bit depth, then the plate's
illumination / pixel-size correction (`data.illumination`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from fibroclass.data.illumination import PlateCorrections
from fibroclass.errors import FibroclassError
from fibroclass.io.headers import MEGAPIXELS, approved_pixels
from fibroclass.io.images import read_field
from fibroclass.io.pixels import field_bit_depth, known_size
from fibroclass.schema import BIT_DEPTH, PIXEL_SIZE, PLATE, SKIP_REASON, path_col


class FieldReader:
    """Reads row i of a field index as the model sees it before downsampling (picklable for workers).

    Bit depth from `bit_depth`, then `corrections.correct` (flat-field, pixel size, normalization).
    """

    def __init__(self, index: pd.DataFrame, channels: Sequence[str], corrections: PlateCorrections) -> None:
        frame = index.reset_index(drop=True)
        cols = [path_col(c) for c in channels]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise FibroclassError(f"field index has no column {missing[0]} (channels {list(channels)})")
        self.paths = [
            [p if isinstance(p, str) else "" for p in row] for row in frame[cols].itertuples(index=False)
        ]
        self.plates = frame[PLATE].astype(str).tolist()
        self.bit_depths = [field_bit_depth(v) for v in frame.get(BIT_DEPTH, pd.Series([None] * len(frame)))]
        self.pixel_sizes = list(frame.get(PIXEL_SIZE, pd.Series([np.nan] * len(frame))))
        skip = frame[SKIP_REASON] if SKIP_REASON in frame.columns else pd.Series("", index=frame.index)
        self.skip_reasons = [v if isinstance(v, str) else "" for v in skip]
        sizes = frame[MEGAPIXELS] if MEGAPIXELS in frame.columns else pd.Series(np.nan, index=frame.index)
        self.max_pixels = [approved_pixels(v) for v in sizes]  # decode at most what the index approved
        self.corrections = corrections

    def __len__(self) -> int:
        return len(self.paths)

    def cache_key(self) -> str:
        """What the prepared pixels depend on besides the files (settings, estimates, bit depths, sizes)."""
        corr = self.corrections
        h = hashlib.sha256(json.dumps([corr.settings.to_dict(), corr.target_pixel_size_um]).encode())
        for plate in sorted(set(self.plates)):
            est = corr.plates.get(plate)
            for arr in (est.coef, est.dark, est.low, est.high) if est is not None else ():
                h.update(np.round(np.asarray(arr, np.float64), 9).tobytes())
        sizes = [float(v) if known_size(v) else None for v in self.pixel_sizes]
        h.update(json.dumps([self.bit_depths, sizes]).encode())
        return f"illumination:{h.hexdigest()[:16]}"

    def slice(self, start: int, stop: int) -> FieldReader:
        """Rows start..stop-1 as their own reader with only their plates' corrections (small to send)."""
        part, corr = copy.copy(self), self.corrections
        for name in ("paths", "plates", "bit_depths", "pixel_sizes", "skip_reasons"):
            setattr(part, name, getattr(self, name)[start:stop])
        part.corrections = PlateCorrections(corr.settings, corr.channels, corr.target_pixel_size_um)
        part.corrections.plates = {
            p: replace(corr.plates[p], _cache={}) for p in set(part.plates) if p in corr.plates
        }
        return part

    def skip_reason(self, i: int) -> str:
        """Why field i cannot be read (a missing or duplicated channel file, from discovery), else ""."""
        return self.skip_reasons[i]

    def raw(self, i: int) -> np.ndarray:
        """Field i as stored, scaled to [0, 1] by its plate's bit depth (for QC and other readouts)."""
        return read_field(self.paths[i], self.bit_depths[i], self.max_pixels[i])

    def correct(self, i: int, img: np.ndarray) -> np.ndarray:
        """The model's view of field i given its `raw` pixels."""
        return self.corrections.correct(img, self.plates[i], self.pixel_sizes[i])

    def __call__(self, i: int) -> np.ndarray:
        return self.correct(i, self.raw(i))
