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
    z_prime_scale: str = "probability"  # Z′/SSMD on p(disease) of the control wells, or "score" (logits)
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA), fp32 or bf16
    compile: bool = False  # torch.compile the model forward
    chunk_fields: int = 256  # fields per resumable part written to <out>/parts/
    readout: dict[str, Any] = field(default_factory=dict)  # field_qc, nuclei, ... sections (readout.yaml)
    report: bool = True  # write report.html (+ plots/)
    report_gradcam: bool = True  # Grad-CAM overlays of the montage fields in the report

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
        if self.z_prime_scale not in ("probability", "score"):
            raise FibroclassError(
                f"score config: qc.z_prime_scale must be probability or score, got {self.z_prime_scale!r}"
            )
        if self.chunk_fields < 1:
            raise FibroclassError(
                f"score config: inference.chunk_fields must be >= 1, got {self.chunk_fields}"
            )
        # Unknown or mistyped readout keys fail here; stored with every default filled in (provenance).
        self.readout = self.readout_settings().to_dict()

    def readout_settings(self):  # noqa: ANN201 - scoring.readout.ReadoutSettings (imported lazily)
        """The parsed readout sections (field QC, nuclei, off-target, dose response, calls, organization)."""
        from fibroclass.scoring.readout import ReadoutSettings

        return ReadoutSettings.from_dict(self.readout)


# YAML section -> {yaml key: ScoreConfig attribute}; top-level scalars map to themselves.
_SECTIONS = {
    "discovery": {"naming": "naming", "pattern": "pattern", "channels": "channels", "z": "z"},
    "platemap": {"columns": "platemap_columns"},
    "qc": {"z_prime_min": "z_prime_min", "z_prime_scale": "z_prime_scale"},
    "inference": {
        "batch_size": "batch_size",
        "num_workers": "num_workers",
        "device": "device",
        "precision": "precision",
        "compile": "compile",
        "chunk_fields": "chunk_fields",
    },
    "report": {"enabled": "report", "gradcam": "report_gradcam"},
}
_TOP_LEVEL = {"controls", "reference", "compounds"}
# Whole sections kept in ScoreConfig.readout (configs/score/readout.yaml; `include:` merges files).
_READOUT = ("field_qc", "nuclei", "offtarget", "dose_response", "calls", "organization")


def config_from_dict(raw: dict[str, Any], source: str = "score config") -> ScoreConfig:
    """Build a ScoreConfig from the nested YAML layout; unknown keys are errors naming `source`."""
    kwargs: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key in _TOP_LEVEL:
            kwargs[key] = value
        elif key in _READOUT:
            if value is not None and not isinstance(value, dict):
                raise FibroclassError(f"{source}: section '{key}' must be a mapping")
            kwargs.setdefault("readout", {})[key] = dict(value or {})
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
            known = sorted(_TOP_LEVEL | set(_SECTIONS) | set(_READOUT))
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
    from fibroclass.scoring.readout import ReadoutSettings

    ReadoutSettings.from_dict(kwargs.get("readout"), source)  # errors name the config file
    return ScoreConfig(**kwargs)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`; sections (mappings) are merged key by key."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = {**out[key], **value} if both else value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FibroclassError(f"score config {path} is not valid YAML: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise FibroclassError(f"score config {path} must be a mapping at the top level")
    return raw or {}


def _with_includes(raw: dict[str, Any], path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Resolve `include: FILE` (or a list), relative to `path`'s folder: included files first, then `raw`."""
    includes = raw.pop("include", None)
    if includes is None:
        return raw
    merged: dict[str, Any] = {}
    for name in [includes] if isinstance(includes, str) else list(includes):
        inc = (path.parent / str(name)).resolve()
        if not inc.is_file():
            raise FibroclassError(f"score config {path}: included file {name} not found ({inc})")
        if inc in seen:
            raise FibroclassError(f"score config {path}: include cycle through {inc}")
        merged = _merged(merged, _with_includes(_read_yaml(inc), inc, (*seen, inc)))
    return _merged(merged, raw)


def load_score_config(path: str | Path | None = None) -> ScoreConfig:
    """Read a score YAML config (`include:` files merged first); None gives the defaults."""
    if path is None:
        return ScoreConfig()
    path = Path(path)
    if not path.is_file():
        raise FibroclassError(f"score config {path} not found")
    raw = _with_includes(_read_yaml(path), path, (path.resolve(),))
    return config_from_dict(raw, source=f"score config {path}")
