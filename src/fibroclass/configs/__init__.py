"""The shipped configs (a copy of the repository's `configs/`, kept identical by a test), found by name.

`resolve_config("train", "gpu_resnet18")` is the packaged `train/gpu_resnet18.yaml`; an existing file path
is returned as it is, and a missing `configs/<kind>/<name>.yaml` path (the README's examples, run outside a
checkout) falls back to the packaged file of that name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fibroclass.errors import FibroclassError

KINDS = ("train", "score")


def packaged_dir(kind: str) -> Path:
    """The folder of the shipped `kind` configs inside the installed package."""
    if kind not in KINDS:
        raise FibroclassError(f"unknown config kind {kind!r} (known: {', '.join(KINDS)})")
    return Path(str(resources.files(__name__).joinpath(kind)))


def shipped(kind: str) -> list[str]:
    """Names of the shipped `kind` configs (file stems)."""
    return sorted(p.stem for p in packaged_dir(kind).glob("*.yaml"))


def resolve_config(kind: str, name: str | Path) -> Path:
    """A config file path from a path or a shipped config's name (`default`, `default.yaml`)."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    bare = path.parent == Path(".")
    in_configs = path.parent.name == kind and path.parent.parent.name == "configs"
    if (bare or in_configs) and stem in shipped(kind):
        return packaged_dir(kind) / f"{stem}.yaml"
    raise FibroclassError(
        f"{kind} config {name} not found: give a YAML path or a shipped name ({', '.join(shipped(kind))})"
    )
