"""Scoring configuration: one typed tree that the YAML files, the CLI options and the library go through.

`ScoreConfig` holds discovery, control queries, plate QC, inference and report settings, and `readout`, a
`ReadoutSettings` of typed sections (`field_qc`, `nuclei`, `offtarget`, `dose_response`, `calls`,
`organization`). YAML (`configs/score/*.yaml`, `include:` merged first) is read by `load_score_config`,
parsed strictly by `config_from_dict` (an unknown key is an error naming it); CLI options and library
callers change it with `ScoreConfig.with_overrides(**{attribute: value})`, which validates the same way.
`SCORE_OPTIONS` lists the attributes `fibroclass score` exposes as options (declared once, here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import yaml

from fibroclass.configs import resolve_config
from fibroclass.errors import FibroclassError
from fibroclass.io.formats.stacks import check_z
from fibroclass.io.images import DEFAULT_MAX_MEGAPIXELS
from fibroclass.measure.field_qc import FieldQCParams
from fibroclass.measure.nuclei import NucleiParams
from fibroclass.measure.organization import FIELD_SIGMA, ORG_COHERENCY, ORG_PREFIX, WINDOW_UM
from fibroclass.settings import Section, check_keys


# -- readout sections ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OffTargetParams(Section):
    """The `offtarget` section of `configs/score/readout.yaml`."""

    SECTION: ClassVar[str] = "offtarget"

    z_min: float = 3.0
    min_spread_frac: float = 0.05


@dataclass(frozen=True)
class CallParams(Section):
    """The `calls` section of `configs/score/readout.yaml` (+ `offtarget.z_min`)."""

    SECTION: ClassVar[str] = "calls"

    viability_min_pct: float = 70.0
    toxic_min_doses: int = 1
    offtarget_z_min: float = 3.0
    hit_rescue_pct: float = 50.0
    active_rescue_pct: float = 25.0
    hit_min_active_doses: int = 2
    hit_min_r2: float = 0.5
    hit_min_spearman: float = 0.6
    ontarget_min_pct: float = 25.0
    inactive_max_rescue_pct: float = 25.0


@dataclass(frozen=True)
class OrganizationParams(Section):
    """The `organization` section: the organization co-readout against the CNN (configs/score/default.yaml)."""

    SECTION: ClassVar[str] = "organization"

    feature: str = ORG_COHERENCY  # org_* column whose well mean is normalized to the controls
    min_rho: float = 0.5  # plate warning below this Spearman ρ (CNN rescue vs organization rescue)
    disagree_z: float = 3.0  # well flag / no confirmation when |discordance z| reaches this
    min_separation: float = 2.0  # controls must differ by this many pooled SDs on `feature`
    min_spread_pct: float = 5.0  # floor (% points) on the control spreads used for the z-scores
    confirm_offtarget: bool = True  # a confirmed rescue explains the embedding's orthogonal residual
    max_side: int = 512  # fields larger than this (px) are block-mean downsampled for the org_* features
    window_um: float = WINDOW_UM  # OrientationJ local window σ (µm), converted per field with its pixel size
    window_px: float = FIELD_SIGMA  # the window (px of the analysed field) where the pixel size is unknown

    def __post_init__(self) -> None:
        if not str(self.feature).startswith(ORG_PREFIX):
            raise FibroclassError(f"organization.feature must name an org_* column, got {self.feature!r}")
        if not (self.window_um > 0 and self.window_px > 0):
            raise FibroclassError(
                f"organization.window_um and window_px must be > 0, got {self.window_um}, {self.window_px}"
            )


RESCUE_METERS = ("fused", "axis", "logit")
# Organization columns the fused meter may use: shape and order, never cell number (toxicity is not rescue).
FUSED_FEATURES = (
    ORG_COHERENCY,
    "org_order_parameter",
    "org_local_order",
    "org_nuclei_area_mean",
    "org_nuclei_eccentricity_mean",
    "org_nuclei_aspect_mean",
    "org_nuclei_order",
    "org_nuclei_log_aspect",
)


@dataclass(frozen=True)
class RescueParams(Section):
    """The `rescue` section: which meter `rescue_pct` is computed on (scoring.wells.readout)."""

    SECTION: ClassVar[str] = "rescue"

    meter: str = "logit"  # logit | fused | axis (configs/score/readout.yaml says why logit is the default)
    embedding_pcs: int = 8  # principal components of the control wells' embeddings the LDA sees
    fused_logit: bool = True  # the fused meter also sees the CNN logit
    features: tuple[str, ...] = FUSED_FEATURES  # org_* well columns of the fused meter

    def __post_init__(self) -> None:
        if self.meter not in RESCUE_METERS:
            raise FibroclassError(f"rescue.meter must be one of {', '.join(RESCUE_METERS)}, got {self.meter!r}")
        if int(self.embedding_pcs) < 0:
            raise FibroclassError(f"rescue.embedding_pcs must be >= 0, got {self.embedding_pcs}")
        feats = (self.features,) if isinstance(self.features, str) else tuple(self.features)
        bad = [f for f in feats if not str(f).startswith(ORG_PREFIX)]
        if bad:
            raise FibroclassError(f"rescue.features must name org_* columns, got {bad}")
        object.__setattr__(self, "features", tuple(str(f) for f in feats))
        object.__setattr__(self, "embedding_pcs", int(self.embedding_pcs))


@dataclass(frozen=True)
class ActivityParams(Section):
    """The `activity` section: phenotypic activity (copairs mAP vs vehicle, scoring.compounds.activity)."""

    SECTION: ClassVar[str] = "activity"

    enabled: bool = True
    null_size: int = 10000  # permutations of copairs' null distribution (p-values)
    fdr: float = 0.05  # a dose is active when its Benjamini-Hochberg q-value is below this
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.null_size) < 100 or not 0 < float(self.fdr) < 1:
            raise FibroclassError(
                f"activity.null_size must be >= 100 and activity.fdr in (0, 1), got {self.null_size}, {self.fdr}"
            )


@dataclass(frozen=True)
class DoseResponseParams(Section):
    """The `dose_response` section of `configs/score/readout.yaml` (documented there)."""

    SECTION: ClassVar[str] = "dose_response"

    n_boot: int = 200
    seed: int = 0
    ci_level: float = 0.95
    hill_min: float = 0.3
    hill_max: float = 5.0
    bottom_min: float = -30.0
    bottom_max: float = 30.0
    top_min: float = -100.0
    top_max: float = 200.0
    top_reference: float | None = 100.0
    top_prior_sd: float | None = 50.0
    ec50_margin_decades: float = 1.0
    min_doses: int = 4
    flat_min_amplitude: float = 15.0
    flat_p_value: float = 0.05
    viability_min_pct: float = 70.0


@dataclass(frozen=True)
class ReadoutSettings:
    """Every readout section, typed (the readout keys of a score config; `configs/score/readout.yaml`)."""

    field_qc: FieldQCParams = field(default_factory=FieldQCParams)
    nuclei: NucleiParams = field(default_factory=NucleiParams)
    offtarget: OffTargetParams = field(default_factory=OffTargetParams)
    dose_response: DoseResponseParams = field(default_factory=DoseResponseParams)
    calls: CallParams = field(default_factory=CallParams)
    organization: OrganizationParams = field(default_factory=OrganizationParams)
    rescue: RescueParams = field(default_factory=RescueParams)
    activity: ActivityParams = field(default_factory=ActivityParams)

    @classmethod
    def from_dict(cls, raw: Mapping | None, source: str = "score config") -> ReadoutSettings:
        """Strict: unknown sections or keys are errors naming `source`. `calls.offtarget_z_min` defaults to
        `offtarget.z_min`, `dose_response.viability_min_pct` to `calls.viability_min_pct`."""
        raw = dict(raw or {})
        try:
            check_keys(raw, READOUT_SECTIONS, f"{source} (readout sections)")
            for name, value in raw.items():
                if value is not None and not isinstance(value, Mapping):
                    raise FibroclassError(f"section '{name}' must be a mapping")
            sections = {name: dict(raw.get(name) or {}) for name in READOUT_SECTIONS}
            off = OffTargetParams.from_dict(sections["offtarget"])
            sections["calls"].setdefault("offtarget_z_min", off.z_min)
            calls = CallParams.from_dict(sections["calls"])
            sections["dose_response"].setdefault("viability_min_pct", calls.viability_min_pct)
            return cls(
                field_qc=FieldQCParams.from_dict(sections["field_qc"]),
                nuclei=NucleiParams.from_dict(sections["nuclei"]),
                offtarget=off,
                dose_response=DoseResponseParams.from_dict(sections["dose_response"]),
                calls=calls,
                organization=OrganizationParams.from_dict(sections["organization"]),
                rescue=RescueParams.from_dict(sections["rescue"]),
                activity=ActivityParams.from_dict(sections["activity"]),
            )
        except FibroclassError as exc:
            text = str(exc)
            raise FibroclassError(text if text.startswith(source) else f"{source}: {text}") from exc

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Every section with every key (defaults filled in): `from_dict(to_dict())` is the same."""
        return {f.name: asdict(getattr(self, f.name)) for f in fields(self)}


READOUT_SECTIONS = tuple(f.name for f in fields(ReadoutSettings))


# -- the score config ----------------------------------------------------------------------------------
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
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # larger planes (per file header) are flagged oversize
    channels: dict[str, str] = field(default_factory=_default_channels)
    platemap_columns: dict[str, str] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=_default_controls)
    reference: str = "role == 'reference'"
    compounds: str = "role in ['treatment', 'reference'] and concentration_uM > 0"
    z_prime_min: float = 0.5
    z_prime_scale: str = "auto"  # auto | readout (the rescue meter's scale) | probability (p(disease))
    batch_size: int = 64
    num_workers: int | str = "auto"  # field-reading processes; auto = CPUs - 1, capped by memory
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA), fp32 or bf16
    compile: bool = False  # torch.compile the model forward
    chunk_fields: int = 256  # fields per resumable part written to <out>/parts/
    readout: ReadoutSettings = field(default_factory=ReadoutSettings)  # a mapping of sections is parsed
    report: bool = True  # write report.html (+ plots/)
    report_gradcam: bool = True  # Grad-CAM overlays of the montage fields in the report
    report_thumbnails: int = 1536  # wells with a field thumbnail in the report's plate heatmaps (0 = none)
    assays: list[str] = field(default_factory=list)  # secondary readout files (io.assays), `--assay`

    def __post_init__(self) -> None:
        if isinstance(self.assays, str | Path):
            self.assays = [self.assays]
        self.assays = [str(a) for a in (self.assays or [])]
        if not isinstance(self.readout, ReadoutSettings):
            self.readout = ReadoutSettings.from_dict(self.readout)
        missing = {"healthy", "disease"} - set(self.controls)
        if missing:
            raise FibroclassError(f"score config: controls must define {sorted(missing)} queries")
        for name, kind in _NUMBERS.items():
            if name == "num_workers" and str(self.num_workers).strip().lower() == "auto":
                self.num_workers = "auto"
                continue
            try:
                setattr(self, name, kind(getattr(self, name)))
            except (TypeError, ValueError) as exc:
                raise FibroclassError(
                    f"score config: '{name}' must be a number{' or auto' if name == 'num_workers' else ''}, "
                    f"got {getattr(self, name)!r}"
                ) from exc
        for name in ("channels", "controls", "platemap_columns"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, {})
            elif not isinstance(value, dict):
                raise FibroclassError(f"score config: '{name}' must be a mapping, got {value!r}")
        if self.batch_size < 1:
            raise FibroclassError(f"score config: inference.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers != "auto" and self.num_workers < 0:
            raise FibroclassError(f"score config: inference.num_workers must be >= 0, got {self.num_workers}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise FibroclassError(
                f"score config: inference.precision must be auto, fp32 or bf16, got {self.precision!r}"
            )
        self.z = check_z(self.z)
        if self.z_prime_scale == "score":  # the name before there were meters: the scale rescue uses
            self.z_prime_scale = "readout"
        if self.z_prime_scale not in ("auto", "readout", "probability"):
            raise FibroclassError(
                f"score config: qc.z_prime_scale must be auto, readout or probability, got {self.z_prime_scale!r}"
            )
        if not self.max_megapixels > 0:
            raise FibroclassError(
                f"score config: discovery.max_megapixels must be > 0, got {self.max_megapixels}"
            )
        if self.chunk_fields < 1:
            raise FibroclassError(
                f"score config: inference.chunk_fields must be >= 1, got {self.chunk_fields}"
            )

    def with_overrides(self, **overrides: Any) -> ScoreConfig:
        """A copy with the given attributes replaced (None = keep), validated like a config file."""
        check_keys(overrides, [f.name for f in fields(self)], "score config overrides")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the readout as nested sections), as recorded in run.json."""
        return {**self.__dict__, "readout": self.readout.to_dict()}


_NUMBERS = {
    "z_prime_min": float,
    "batch_size": int,
    "num_workers": int,
    "chunk_fields": int,
    "max_megapixels": float,
    "report_thumbnails": int,
}

# `fibroclass score` options that override config attributes: option -> (attribute, help). Declared once.
SCORE_OPTIONS: dict[str, tuple[str, str]] = {
    "--batch-size": ("batch_size", "Tiles per forward pass (inference.batch_size)."),
    "--device": ("device", "auto, cpu, cuda or cuda:N (inference.device)."),
    "--num-workers": ("num_workers", "Field-reading worker processes, or auto (inference.num_workers)."),
    "--precision": ("precision", "auto (bf16 on CUDA), fp32 or bf16 (inference.precision)."),
    "--compile/--no-compile": ("compile", "torch.compile the model (GPU; slow first batches)."),
}

# YAML section -> {yaml key: ScoreConfig attribute}; top-level scalars map to themselves.
_SECTIONS = {
    "discovery": {
        "naming": "naming",
        "pattern": "pattern",
        "channels": "channels",
        "z": "z",
        "max_megapixels": "max_megapixels",
    },
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
    "report": {"enabled": "report", "gradcam": "report_gradcam", "thumbnails": "report_thumbnails"},
}
_TOP_LEVEL = {"controls", "reference", "compounds", "assays"}


def config_from_dict(raw: dict[str, Any], source: str = "score config") -> ScoreConfig:
    """Build a ScoreConfig from the nested YAML layout; unknown keys are errors naming `source`."""
    kwargs: dict[str, Any] = {}
    readout: dict[str, Any] = {}
    check_keys(raw or {}, sorted(_TOP_LEVEL | set(_SECTIONS) | set(READOUT_SECTIONS)), source)
    for key, value in (raw or {}).items():
        if key in _TOP_LEVEL:
            kwargs[key] = value
        elif key in READOUT_SECTIONS:
            readout[key] = value
        else:
            if not isinstance(value, dict):
                raise FibroclassError(f"{source}: section '{key}' must be a mapping")
            check_keys(value, _SECTIONS[key], f"{source}, section '{key}'", prefix=f"{key}.")
            kwargs.update({_SECTIONS[key][sub]: sub_value for sub, sub_value in value.items()})
    kwargs["readout"] = ReadoutSettings.from_dict(readout, source)
    try:
        return ScoreConfig(**kwargs)
    except FibroclassError as exc:
        text = str(exc)
        raise FibroclassError(text.replace("score config", source, 1)) from exc


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
    """Read a score YAML config (a path or a shipped name such as `default`; `include:` files merged
    first); None gives the defaults."""
    if path is None:
        return ScoreConfig()
    path = resolve_config("score", path)
    raw = _with_includes(_read_yaml(path), path, (path.resolve(),))
    return config_from_dict(raw, source=f"score config {path}")


def load_readout_config(path: str | Path) -> ReadoutSettings:
    """The readout sections of a YAML file (other top-level keys are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FibroclassError(f"readout config {path} not found")
    raw = _read_yaml(path)
    sections = {k: v for k, v in raw.items() if k in READOUT_SECTIONS}
    return ReadoutSettings.from_dict(sections, source=f"readout config {path}")


def gate_scale(z_prime_scale: str, meter: str) -> str:
    """The scale the plate gate's Z′ uses: `auto` is the meter's own scale for the fitted meters (fused, axis)
    and p(disease) for the logit meter, whose saturating confident wells would make the window look narrow."""
    if z_prime_scale != "auto":
        return z_prime_scale
    return "probability" if meter == "logit" else "readout"
