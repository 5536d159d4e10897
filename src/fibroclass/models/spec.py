"""Declarative description of a trained classifier: everything needed to rebuild it and feed it.

Saved as JSON next to the weights (never pickled), so scoring can rebuild the network safely and
prepare fields exactly as in training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fibroclass.schema import CHANNELS, LABEL_NAMES


@dataclass
class ModelSpec:
    backbone: str = "tiny"  # name in fibroclass.models.backbones
    channels: tuple[str, ...] = CHANNELS  # input channel order
    crop_size: int = 64  # network input tile size in pixels, after downsampling
    downsample: int = 1  # integer block-mean factor applied to raw fields before tiling
    mean: list[float] = field(default_factory=lambda: [0.0] * len(CHANNELS))  # per-channel, training split
    std: list[float] = field(default_factory=lambda: [1.0] * len(CHANNELS))
    embedding_dim: int = 0  # filled by the classifier
    temperature: float = 1.0  # calibration: p = sigmoid(logit / temperature)
    pixel_size_um: float | None = None  # training resolution, if known
    label_names: tuple[str, ...] = LABEL_NAMES
    extra: dict = field(default_factory=dict)  # free-form (e.g. illumination settings)

    @property
    def in_chans(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["label_names"] = list(self.label_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        if "label_names" in known:
            known["label_names"] = tuple(known["label_names"])
        return cls(**known)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        return cls.from_dict(json.loads(Path(path).read_text()))
