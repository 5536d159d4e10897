"""Training augmentation (the package's only albumentations importer).

Pipelines operate on float32 HWC arrays in [0, 1] (fields are converted from uint16 on read);
evaluation uses no augmentation at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the training augmentations (set under `data.augmentation`)."""

    flip_p: float = 0.5  # horizontal and vertical flips, each
    rotate90_p: float = 0.5
    affine_p: float = 0.5
    affine_scale: tuple[float, float] = (0.85, 1.15)  # covers donor-to-donor cell size differences
    affine_rotate: tuple[float, float] = (-10.0, 10.0)
    affine_translate: tuple[float, float] = (-0.05, 0.05)  # fraction of the crop
    brightness_contrast_p: float = 0.8
    brightness_limit: float = 0.2  # relative to the crop's mean (stain intensity varies by donor/plate)
    contrast_limit: float = 0.15
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # mild defocus
    noise_p: float = 0.2
    noise_std: tuple[float, float] = (0.0005, 0.002)  # absolute, on [0, 1] intensities (12-bit max ~0.06)


def build_train_transform(cfg: AugmentConfig | None = None) -> A.Compose:
    """Flips, RandomRotate90, small Affine, brightness/contrast, Gaussian blur and noise."""
    c = cfg or AugmentConfig()
    return A.Compose(
        [
            A.HorizontalFlip(p=c.flip_p),
            A.VerticalFlip(p=c.flip_p),
            A.RandomRotate90(p=c.rotate90_p),
            A.Affine(
                scale=tuple(c.affine_scale),
                rotate=tuple(c.affine_rotate),
                translate_percent=tuple(c.affine_translate),
                border_mode=cv2.BORDER_REFLECT_101,
                p=c.affine_p,
            ),
            A.RandomBrightnessContrast(
                brightness_limit=c.brightness_limit,
                contrast_limit=c.contrast_limit,
                brightness_by_max=False,  # brightness shift = limit x the crop's mean, not x 1.0
                p=c.brightness_contrast_p,
            ),
            A.GaussianBlur(sigma_limit=tuple(c.blur_sigma), p=c.blur_p),
            A.GaussNoise(std_range=tuple(c.noise_std), p=c.noise_p),
        ]
    )


def apply_transform(transform: A.Compose, chw: np.ndarray, seed: int) -> np.ndarray:
    """Apply `transform` to a (C, H, W) float32 crop with its own seed; returns (C, H, W) in [0, 1]."""
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    out = transform(image=np.ascontiguousarray(chw.transpose(1, 2, 0)))["image"]
    if out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out.transpose(2, 0, 1), 0.0, 1.0).astype(np.float32, copy=False)
