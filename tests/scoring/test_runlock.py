"""One writer per output folder: a live second writer is refused with its pid and host named; the lock of
a killed (or rebooted, or silent remote) writer is taken over; plate jobs share a folder, not a plate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fibroclass.errors import FibroclassError
from fibroclass.scoring import runlock
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.fields.parts import plate_slug
from fibroclass.scoring.pipeline import PartsResult, score_index
from fibroclass.scoring.runlock import OUT_LOCK, PLATE_LOCK, writing

CFG = ScoreConfig(batch_size=8, chunk_fields=6, device="cpu", report=False, num_workers=0)
HOLD = """
import sys, time
from pathlib import Path
from fibroclass.scoring.runlock import writing
plates = [Path(p) for p in sys.argv[2:]] or None
with writing(Path(sys.argv[1]), plates):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def plates(tmp_path, kit):
    layout = [{**w, "plate": p} for p in ("P1", "P2") for w in kit.screen_layout(p, 8000, 30000)]
    return kit.make_index(tmp_path / "images", layout, sites=1, size=(24, 24))


def _holder(out: Path, *plate_dirs: Path) -> subprocess.Popen:
    """A real second process holding `out` (or plate folders of it) until killed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(runlock.__file__).parents[2]), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out), *map(str, plate_dirs)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(path: Path, **info) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", **info})
    )


def test_live_writer_is_refused_then_its_folder_is_free(tmp_path, kit, plates):
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        with pytest.raises(
            FibroclassError,
            match=rf"is being written by another fibroclass process \(pid {holder.pid} on host",
        ):
            score_index(plates, kit.ToyClassifier(), out, CFG, progress=False)
        with pytest.raises(FibroclassError, match="being written"):  # a plate job neither
            score_index(plates, kit.ToyClassifier(), out, CFG, progress=False, plates=["P1"])
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "fields.parquet").exists()
    res = score_index(
        plates, kit.ToyClassifier(), out, CFG, progress=False
    )  # the killed holder's lock: stale
    assert res.merged and any("took over the lock" in w and "no longer running" in w for w in res.warnings)
    assert not (out / OUT_LOCK).exists()  # released when done


def test_plate_jobs_share_a_folder_but_not_a_plate(tmp_path, kit, plates):
    out = tmp_path / "out"
    p1 = out / "parts" / plate_slug("P1")
    holder = _holder(out, p1)  # a --plate P1 job
    try:
        with pytest.raises(FibroclassError, match=rf"plate folder {p1} .*pid {holder.pid}"):
            score_index(plates, kit.ToyClassifier(), out, CFG, progress=False, plates=["P1"])
        with pytest.raises(FibroclassError, match=rf"plate folder {p1} of {out} is being written"):
            score_index(plates, kit.ToyClassifier(), out, CFG, progress=False)  # a whole run waits for it
        res = score_index(plates, kit.ToyClassifier(), out, CFG, progress=False, plates=["P2"])
        assert isinstance(res, PartsResult) and res.chunks_scored == 2
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "parts" / plate_slug("P2") / PLATE_LOCK).exists()


@pytest.mark.parametrize(
    "info",
    [
        {"pid": "dead"},  # the process is gone
        {"pid": "self", "pid_start": "1"},  # the pid now belongs to a process started later
        {"pid": "self", "boot_id": "another-boot"},  # written before the machine rebooted
        {
            "pid": 1,
            "host": "node-elsewhere",
            "age": runlock.STALE_AFTER_S + 60,
        },  # a remote writer went silent
    ],
)
def test_stale_locks_are_taken_over(tmp_path, info):
    lock = tmp_path / "out" / OUT_LOCK
    pid = {"dead": _dead_pid(), "self": os.getpid()}.get(info["pid"], info["pid"])
    _write_lock(lock, **{k: v for k, v in info.items() if k not in ("age", "pid")}, pid=pid)
    if "age" in info:
        old = time.time() - info["age"]
        os.utime(lock, (old, old))
    with writing(tmp_path / "out") as notes:
        assert len(notes) == 1 and "took over the lock" in notes[0]
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_remote_writer_with_a_recent_heartbeat_is_not_stale(tmp_path):
    lock = tmp_path / "out" / OUT_LOCK
    _write_lock(lock, pid=1, host="node-elsewhere", command="fibroclass score plates --out out")
    with pytest.raises(
        FibroclassError, match=r"pid 1 on host node-elsewhere.*: fibroclass score plates --out out"
    ):
        with writing(tmp_path / "out"):
            pass
    assert json.loads(lock.read_text())["host"] == "node-elsewhere"  # left alone


def test_locks_are_reentrant_within_a_process(tmp_path):
    with writing(tmp_path / "out"), writing(tmp_path / "out") as inner:
        assert inner == [] and (tmp_path / "out" / OUT_LOCK).exists()
    assert not (tmp_path / "out" / OUT_LOCK).exists()
