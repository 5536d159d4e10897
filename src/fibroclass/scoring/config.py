"""Scoring configuration (`configs/score/*.yaml`): discovery, control queries, QC thresholds, inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.stacks import check_z


def _default_channels() -> dict[str, str]:
    return {"w1": "actin", "w2": "nuclei", "ch1": "actin", "ch2": "nuclei"}


def _default_controls() -> dict[str, str]:
    return {"healthy": "role == 'healthy'", "disease": "role == 'disease'"}


@dataclass
class ScoreConfig:
    """Everything `fibroclass score` needs besides the plates, the plate map and the model."""

    naming: str = "auto"
    pattern: str | None = None
    z: str | int = "max"  # Z-stacks: maximum projection, or a 1-based plane number
    channels: dict[str, str] = field(default_factory=_default_channels)
    platemap_columns: dict[str, str] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=_default_controls)
    reference: str = "role == 'reference'"
    compounds: str = "role in ['treatment', 'reference'] and concentration_uM > 0"
    z_prime_min: float = 0.5
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA), fp32 or bf16
    compile: bool = False  # torch.compile the model forward
    chunk_fields: int = 256  # fields per resumable part written to <out>/parts/

    def __post_init__(self) -> None:
        missing = {"healthy", "disease"} - set(self.controls)
        if missing:
            raise FibroclassError(f"score config: controls must define {sorted(missing)} queries")
        if self.batch_size < 1:
            raise FibroclassError(f"score config: inference.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise FibroclassError(f"score config: inference.num_workers must be >= 0, got {self.num_workers}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise FibroclassError(
                f"score config: inference.precision must be auto, fp32 or bf16, got {self.precision!r}"
            )
        self.z = check_z(self.z)
        if self.chunk_fields < 1:
            raise FibroclassError(
                f"score config: inference.chunk_fields must be >= 1, got {self.chunk_fields}"
            )


# YAML section -> {yaml key: ScoreConfig attribute}; top-level scalars map to themselves.
_SECTIONS = {
    "discovery": {"naming": "naming", "pattern": "pattern", "channels": "channels", "z": "z"},
    "platemap": {"columns": "platemap_columns"},
    "qc": {"z_prime_min": "z_prime_min"},
    "inference": {
        "batch_size": "batch_size",
        "num_workers": "num_workers",
        "device": "device",
        "precision": "precision",
        "compile": "compile",
        "chunk_fields": "chunk_fields",
    },
}
_TOP_LEVEL = {"controls", "reference", "compounds"}


def config_from_dict(raw: dict[str, Any], source: str = "score config") -> ScoreConfig:
    """Build a ScoreConfig from the nested YAML layout; unknown keys are errors naming `source`."""
    kwargs: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key in _TOP_LEVEL:
            kwargs[key] = value
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise FibroclassError(f"{source}: section '{key}' must be a mapping")
            for sub, sub_value in value.items():
                if sub not in _SECTIONS[key]:
                    raise FibroclassError(
                        f"{source}: unknown key '{key}.{sub}' (known: {sorted(_SECTIONS[key])})"
                    )
                kwargs[_SECTIONS[key][sub]] = sub_value
        else:
            known = sorted(_TOP_LEVEL | set(_SECTIONS))
            raise FibroclassError(f"{source}: unknown key '{key}' (known: {known})")
    for name, kind in (
        ("z_prime_min", float),
        ("batch_size", int),
        ("num_workers", int),
        ("chunk_fields", int),
    ):
        if name in kwargs:
            try:
                kwargs[name] = kind(kwargs[name])
            except (TypeError, ValueError) as exc:
                raise FibroclassError(f"{source}: '{name}' must be a number, got {kwargs[name]!r}") from exc
    for name in ("channels", "controls", "platemap_columns"):
        if name in kwargs and kwargs[name] is None:
            kwargs[name] = {}
        if name in kwargs and not isinstance(kwargs[name], dict):
            raise FibroclassError(f"{source}: '{name}' must be a mapping, got {kwargs[name]!r}")
    return ScoreConfig(**kwargs)


def load_score_config(path: str | Path | None = None) -> ScoreConfig:
    """Read a score YAML config; None gives the defaults."""
    if path is None:
        return ScoreConfig()
    path = Path(path)
    if not path.is_file():
        raise FibroclassError(f"score config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FibroclassError(f"score config {path} is not valid YAML: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise FibroclassError(f"score config {path} must be a mapping at the top level")
    return config_from_dict(raw or {}, source=f"score config {path}")
