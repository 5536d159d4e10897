"""Field-stage engines: the local engine (DataLoader workers on this machine) and Ray Data (a cluster).

Both take the chunks to score and write them to `OUT/parts/` through `scoring.fields.stage.ChunkSink`;
everything before (planning, fingerprints) and after (the merge) is the same code whichever engine ran.
"""

from __future__ import annotations

from fibroclass.errors import FibroclassError
from fibroclass.scoring.engines.base import FieldEngine
from fibroclass.scoring.engines.local import LocalEngine

ENGINES = ("local", "ray")


def make_engine(name: str = "local", ray_address: str | None = None) -> FieldEngine:
    """The engine called `name`; `ray_address` (auto, ray://HOST:PORT or HOST:PORT) only for "ray"."""
    if name == "local":
        if ray_address:
            raise FibroclassError("--ray-address needs --engine ray")
        return LocalEngine()
    if name == "ray":
        try:
            from fibroclass.scoring.engines.ray_engine import RayEngine
        except ImportError as exc:
            missing = getattr(exc, "name", None) or "ray"
            raise FibroclassError(
                f"--engine ray needs Ray Data ({missing} is not installed): pip install 'fibroclass[ray]'"
            ) from exc
        return RayEngine(ray_address)
    raise FibroclassError(f"unknown scoring engine {name!r} (use {' or '.join(ENGINES)})")


__all__ = ["ENGINES", "FieldEngine", "LocalEngine", "make_engine"]
