"""Per-plate illumination correction and intensity normalization, identical in training and scoring.

What the optics add is estimated from each plate's own fields, once per plate and channel:

1. Flat-field (vignetting, uneven illumination): every sampled field is averaged into a coarse grid. With
   `x = d + F·s` (dark level `d`, illumination `F`, specimen signal `s` alike everywhere on average), each
   cell's sorted values across fields regressed on the plate's average sorted curve have slope `F/mean(F)`
   whatever `d` (a CIDRE-style estimate); a robust low-order polynomial surface fitted to the slopes is the
   flat-field, and `d` follows from the intercepts. A field is corrected as `d + (x - d) / F`.
2. Intensity normalization (brightness drift between plates): after the flat-field and pixel-size
   resampling, `low`/`high` are the plate medians of per-field `low_pct`/`high_pct` percentiles, taken over
   the plate's control fields (`control_roles`) when it has some, else all fields; values are mapped
   linearly so that `low -> low_target` and `high -> high_target`.

`data.reader.FieldReader` applies bit depth, flat-field, pixel-size resampling (io.pixels) and normalization to one
field of an index: training (`data.fields.FieldCache`) and scoring (`scoring.fields.inference`) both read through
it, with the settings saved in `ModelSpec.extra["illumination"]`. `PlateCorrections.save` writes the
estimates (`.npz`) that the training run and every scoring run keep. numpy/scipy only (no torch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.headers import MEGAPIXELS, approved_pixels
from fibroclass.io.images import read_field
from fibroclass.io.pixels import field_bit_depth, known_size, rescale_to_pixel_size
from fibroclass.measure.flatfield import estimate_flatfield, evaluate_surface, grid_means, n_terms
from fibroclass.schema import BIT_DEPTH, PIXEL_SIZE, PLATE, ROLE, SKIP_REASON, path_col
from fibroclass.settings import check_keys

ILLUMINATION_FILE = "illumination.npz"  # estimates kept with a training run / per scored plate
PREVIEW = 64  # side of the flat-field images stored in the .npz (the polynomial is stored exactly)


@dataclass(frozen=True)
class IlluminationSettings:
    """How fields are corrected; stored with the model so scoring repeats exactly what training did."""

    flatfield: bool = True
    normalize: bool = True
    max_fields: int = 48  # fields per plate read for each estimate (evenly spread over the plate)
    min_fields: int = 8  # fewer fields on a plate: no flat-field (noted)
    grid: int = 24  # fields are averaged into grid x grid cells for the flat-field
    degree: int = 2  # degree of the polynomial flat-field surface (2: smooth, robust with few fields)
    low_pct: float = 1.0
    high_pct: float = 99.0
    low_target: float = 0.02
    high_target: float = 0.3
    control_roles: tuple[str, ...] = ("healthy", "disease")

    def __post_init__(self) -> None:
        if self.max_fields < 1 or self.min_fields < 1 or self.grid < 4 or not 0 <= self.degree <= 8:
            raise FibroclassError(
                f"illumination settings out of range: max_fields={self.max_fields}, min_fields={self.min_fields}, "
                f"grid={self.grid} (>= 4), degree={self.degree} (0-8)"
            )
        if not 0 <= self.low_pct < self.high_pct <= 100 or self.low_target >= self.high_target:
            raise FibroclassError(
                f"illumination percentiles/targets must increase: low_pct={self.low_pct}, high_pct={self.high_pct}, "
                f"low_target={self.low_target}, high_target={self.high_target}"
            )

    @property
    def enabled(self) -> bool:
        return self.flatfield or self.normalize

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["control_roles"] = list(self.control_roles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IlluminationSettings:
        """Settings from `ModelSpec.extra["illumination"]`; None (models trained without it) = disabled."""
        if d is None:
            return DISABLED
        check_keys(d, {f.name for f in fields(cls)}, "illumination settings")
        kwargs = dict(d)
        if "control_roles" in kwargs:
            kwargs["control_roles"] = tuple(kwargs["control_roles"])
        return cls(**kwargs)


DISABLED = IlluminationSettings(flatfield=False, normalize=False)


@dataclass
class PlateCorrection:
    """The estimates of one plate: flat-field surfaces, dark level and normalization levels per channel."""

    plate: str
    degree: int
    coef: np.ndarray  # (C, n_terms) flat-field polynomial, mean 1 over the field
    dark: np.ndarray  # (C,) additive level the flat-field does not scale
    low: np.ndarray  # (C,) normalization levels (NaN: channel not normalized)
    high: np.ndarray
    n_flat_fields: int = 0
    n_norm_fields: int = 0
    _cache: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def flatfield(self, shape: tuple[int, int]) -> np.ndarray:
        """(C, H, W) flat-field for fields of `shape` (the last shape is kept; see `release`)."""
        ff = self._cache.get(shape)
        if ff is None:
            ff = np.maximum(np.stack([evaluate_surface(c, self.degree, shape) for c in self.coef]), 0.05)
            self._cache = {shape: ff.astype(np.float32)}
        return self._cache[shape]

    def release(self) -> None:
        """Drop the full-size flat-field kept by `flatfield` (memory stays flat over many plates)."""
        self._cache = {}

    def apply_flatfield(self, img: np.ndarray) -> np.ndarray:
        dark = self.dark.astype(np.float32)[:, None, None]
        return dark + (img - dark) / self.flatfield(img.shape[1:])

    def apply_normalization(self, img: np.ndarray, settings: IlluminationSettings) -> np.ndarray:
        out = img.copy()
        for c in range(img.shape[0]):
            lo, hi = float(self.low[c]), float(self.high[c])
            if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
                gain = (settings.high_target - settings.low_target) / (hi - lo)
                out[c] = settings.low_target + (img[c] - lo) * gain
        return out


def _identity(plate: str, n_channels: int, degree: int) -> PlateCorrection:
    coef = np.zeros((n_channels, n_terms(degree)))
    coef[:, 0] = 1.0
    nan = np.full(n_channels, np.nan)
    return PlateCorrection(plate, degree, coef, np.zeros(n_channels), nan, nan.copy())


def _spread(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


class PlateCorrections:
    """Estimated corrections of every plate of a field index, plus the resolution fields are resampled to.

    Build with `estimate`; `correct(img, plate, pixel_size_um)` turns a raw (C, H, W) field into the model's
    input before downsampling. `notes` says what could not be estimated.
    """

    def __init__(
        self,
        settings: IlluminationSettings,
        channels: Sequence[str],
        target_pixel_size_um: float | None = None,
    ) -> None:
        self.settings = settings
        self.channels = tuple(channels)
        self.target_pixel_size_um = float(target_pixel_size_um) if known_size(target_pixel_size_um) else None
        self.plates: dict[str, PlateCorrection] = {}
        self.notes: list[str] = []
        self._last: PlateCorrection | None = None

    # -- estimation -------------------------------------------------------------------------------------
    @classmethod
    def estimate(
        cls,
        index: pd.DataFrame,
        channels: Sequence[str],
        settings: IlluminationSettings,
        target_pixel_size_um: float | None = None,
    ) -> PlateCorrections:
        """Estimate every plate of `index` (keys, `path_<channel>`, optional bit_depth/pixel_size_um/role)."""
        out = cls(settings, channels, target_pixel_size_um)
        frame = index.reset_index(drop=True)
        out._note_pixel_sizes(frame)
        for plate, grp in frame.groupby(PLATE, sort=True):
            out.plates[str(plate)] = out._estimate_plate(str(plate), grp)
        return out

    def _note_pixel_sizes(self, frame: pd.DataFrame) -> None:
        sizes = frame[PIXEL_SIZE] if PIXEL_SIZE in frame.columns else pd.Series(np.nan, index=frame.index)
        known = sizes.map(known_size)
        if self.target_pixel_size_um is None and known.any():
            self.notes.append("the model records no pixel size; fields are used at their own resolution")
        elif self.target_pixel_size_um is not None and not known.all():
            n = int((~known).sum())
            self.notes.append(
                f"{n} field(s) have no pixel size in their export; used at their own resolution "
                f"(model: {self.target_pixel_size_um:g} µm/pixel)"
            )
        elif self.target_pixel_size_um is not None:
            differ = sizes[known].astype(float)
            differ = differ[(differ / self.target_pixel_size_um - 1).abs() >= 0.01]
            if len(differ):
                self.notes.append(
                    f"{len(differ)} field(s) at {sorted(set(differ.round(4)))} µm/pixel resampled to the model's "
                    f"{self.target_pixel_size_um:g} µm/pixel"
                )

    def _read_raw(self, row: pd.Series) -> np.ndarray:
        paths = [str(row[path_col(c)]) for c in self.channels]
        return read_field(paths, field_bit_depth(row.get(BIT_DEPTH)), approved_pixels(row.get(MEGAPIXELS)))

    def _estimate_plate(self, plate: str, grp: pd.DataFrame) -> PlateCorrection:
        s = self.settings
        corr = _identity(plate, len(self.channels), s.degree)
        if not s.enabled:
            return corr
        rows = grp.reset_index(drop=True)
        if SKIP_REASON in rows.columns:  # missing-channel and oversize fields are never read for estimates
            rows = rows[rows[SKIP_REASON].fillna("").astype(str) == ""].reset_index(drop=True)
        if s.flatfield:
            grids, failed = [], 0
            for i in _spread(len(rows), s.max_fields):
                try:
                    img = self._read_raw(rows.iloc[i])
                except FibroclassError:
                    failed += 1
                    continue
                if not np.isfinite(img).all():  # NaN/inf pixels: flagged when scored, never estimated from
                    failed += 1
                    continue
                grids.append(np.stack([grid_means(p, s.grid) for p in img]))
            shapes = {g.shape for g in grids}
            if len(grids) < s.min_fields or len(shapes) != 1:
                why = (
                    f"{len(grids)} readable field(s) (< {s.min_fields})"
                    if len(shapes) <= 1
                    else "mixed shapes"
                )
                self.notes.append(f"plate {plate}: no flat-field correction ({why})")
            else:
                corr.coef, corr.dark = estimate_flatfield(np.stack(grids), s.degree)
                corr.n_flat_fields = len(grids)
            if failed:
                self.notes.append(
                    f"plate {plate}: {failed} unreadable or non-finite field(s) left out of the flat-field"
                )
        if s.normalize:
            self._estimate_levels(corr, rows)
        return corr

    def _estimate_levels(self, corr: PlateCorrection, rows: pd.DataFrame) -> None:
        s = self.settings
        pool = rows
        if ROLE in rows.columns:
            controls = rows[rows[ROLE].isin(list(s.control_roles))]
            if len(controls) >= min(4, len(rows)):
                pool = controls.reset_index(drop=True)
        lows, highs = [], []
        for i in _spread(len(pool), s.max_fields):
            row = pool.iloc[i]
            try:
                img = self._geometry(self._read_raw(row), corr, row.get(PIXEL_SIZE))
            except FibroclassError:
                continue
            if not np.isfinite(img).all():
                continue
            flat = img.reshape(img.shape[0], -1)
            lo, hi = np.percentile(flat, [s.low_pct, s.high_pct], axis=1)
            lows.append(lo)
            highs.append(hi)
        if not lows:
            self.notes.append(f"plate {corr.plate}: no readable field to normalize intensities")
            return
        corr.low, corr.high = np.median(lows, axis=0), np.median(highs, axis=0)
        corr.n_norm_fields = len(lows)
        flat_channels = [c for c, lo, hi in zip(self.channels, corr.low, corr.high, strict=True) if hi <= lo]
        if flat_channels:
            self.notes.append(
                f"plate {corr.plate}: channel(s) {flat_channels} have no contrast; not normalized"
            )

    @classmethod
    def combine(cls, parts: Sequence[PlateCorrections], index: pd.DataFrame) -> PlateCorrections:
        """Per-plate estimates of the plates of `index` (made separately, e.g. in parallel) as one object:
        the plates and notes `estimate(index, ...)` gives with the settings of `parts`."""
        out = cls(parts[0].settings, parts[0].channels, parts[0].target_pixel_size_um)
        out._note_pixel_sizes(index.reset_index(drop=True))
        for part in sorted(parts, key=lambda p: sorted(p.plates)):
            out.plates.update(part.plates)
            out.notes += [n for n in part.notes if n.startswith("plate ")]
        return out

    # -- application -------------------------------------------------------------------------------------
    def _geometry(self, img: np.ndarray, corr: PlateCorrection, pixel_size_um: Any) -> np.ndarray:
        if self.settings.flatfield:
            img = corr.apply_flatfield(img)
        return rescale_to_pixel_size(img, pixel_size_um, self.target_pixel_size_um)

    def correct(self, img: np.ndarray, plate: str, pixel_size_um: float | None = None) -> np.ndarray:
        """A raw (C, H, W) field of `plate` -> flat-field corrected, resampled, normalized float32."""
        corr = self.plates.get(str(plate))
        if self._last is not None and self._last is not corr:
            self._last.release()  # fields arrive plate by plate: keep one plate's flat-field in memory
        self._last = corr
        if corr is None:
            if self.settings.enabled:
                raise FibroclassError(
                    f"plate {plate} has no illumination estimate (estimate its fields first)"
                )
            corr = _identity(str(plate), img.shape[0], self.settings.degree)
        img = self._geometry(img, corr, pixel_size_um)
        if self.settings.normalize:
            img = corr.apply_normalization(img, self.settings)
        return np.ascontiguousarray(img, dtype=np.float32)

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write settings, channels, target pixel size and per-plate estimates (+ flat-field previews) as .npz."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "settings": np.array(json.dumps(self.settings.to_dict())),
            "channels": np.array(self.channels),
            "target_pixel_size_um": np.array(
                np.nan if self.target_pixel_size_um is None else self.target_pixel_size_um
            ),
            "plates": np.array(sorted(self.plates)),
            "notes": np.array(self.notes, dtype=str),
        }
        for k, name in enumerate(sorted(self.plates)):
            corr = self.plates[name]
            arrays[f"plate{k}_coef"] = corr.coef
            arrays[f"plate{k}_dark"] = corr.dark
            arrays[f"plate{k}_low"] = corr.low
            arrays[f"plate{k}_high"] = corr.high
            arrays[f"plate{k}_counts"] = np.array([corr.degree, corr.n_flat_fields, corr.n_norm_fields])
            arrays[f"plate{k}_flatfield"] = corr.flatfield((PREVIEW, PREVIEW))
        np.savez_compressed(path, **arrays)
        return path

    def save_plate(self, plate: str, path: str | Path) -> Path:
        """Write the estimates of one plate (same format as `save`)."""
        one = PlateCorrections(self.settings, self.channels, self.target_pixel_size_um)
        one.plates = {str(plate): self.plates[str(plate)]} if str(plate) in self.plates else {}
        one.notes = [n for n in self.notes if not n.startswith("plate ") or n.startswith(f"plate {plate}:")]
        return one.save(path)

    @classmethod
    def load(cls, path: str | Path) -> PlateCorrections:
        """Read corrections written by `save`."""
        try:
            data = np.load(Path(path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FibroclassError(f"cannot read illumination estimates {path}: {exc}") from exc
        with data:
            settings = IlluminationSettings.from_dict(json.loads(str(data["settings"])))
            target = float(data["target_pixel_size_um"])
            out = cls(settings, [str(c) for c in data["channels"]], None if math.isnan(target) else target)
            out.notes = [str(n) for n in data["notes"]]
            for k, name in enumerate(data["plates"]):
                degree, n_flat, n_norm = (int(v) for v in data[f"plate{k}_counts"])
                out.plates[str(name)] = PlateCorrection(
                    str(name),
                    degree,
                    data[f"plate{k}_coef"],
                    data[f"plate{k}_dark"],
                    data[f"plate{k}_low"],
                    data[f"plate{k}_high"],
                    n_flat,
                    n_norm,
                )
        return out


def training_pixel_size(index: pd.DataFrame) -> float | None:
    """Median known pixel size of the training fields (recorded as `ModelSpec.pixel_size_um`), else None."""
    if PIXEL_SIZE not in index.columns:
        return None
    sizes = index[PIXEL_SIZE][index[PIXEL_SIZE].map(known_size)].astype(float)
    return float(sizes.median()) if len(sizes) else None


def corrections_for_model(index: pd.DataFrame, spec: Any) -> PlateCorrections:
    """Estimate the plates of `index` with the settings a model was trained with (`spec.extra`)."""
    settings = IlluminationSettings.from_dict((getattr(spec, "extra", None) or {}).get("illumination"))
    return PlateCorrections.estimate(index, spec.channels, settings, getattr(spec, "pixel_size_um", None))
