"""One writer per output folder: a lock file holding the writer's pid, host and command.

`fibroclass score` into `OUT` holds `OUT/.fibroclass.lock` (a whole run or `--merge`); `--plate P` jobs
hold `OUT/parts/<plate>/.lock` instead, so one job per plate can share `OUT` while a whole run or a merge
cannot start beside them (nor they beside it). A second writer is refused with a line naming the holder.

A lock is stale, and taken over, when its process is gone: on the same host when its pid no longer runs
(or now belongs to a process started later, or the machine rebooted); from another host (a shared file
system) when its heartbeat (the file's mtime, touched every `HEARTBEAT_S`) is older than `STALE_AFTER_S`.
Acquisition and take-over happen under a short `flock` on the lock's folder, so two newcomers never both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fibroclass.errors import FibroclassError

OUT_LOCK = ".fibroclass.lock"  # in OUT: a whole run or a merge
PLATE_LOCK = ".lock"  # in OUT/parts/<plate>/: a --plate job
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0  # a lock from another host whose heartbeat is older than this is stale


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """Start time of process `pid` (Linux clock ticks since boot; "" when unknown): tells a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _me() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid_start": _start_ticks(pid),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(getattr(sys, "orig_argv", sys.argv))[:500],
    }


def _read(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or torn: judged by its age only
    return info if isinstance(info, dict) else {}


def stale_reason(path: Path, info: dict[str, Any]) -> str:
    """Why the lock `info` read from `path` is stale ("" while its writer may still be running)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "gone"
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return "unreadable lock file" if age > STALE_AFTER_S else ""
    if host == socket.gethostname():
        if info.get("boot_id") and info["boot_id"] != _boot_id():
            return f"pid {pid} ran before this machine rebooted"
        if not _pid_runs(pid):
            return f"pid {pid} is no longer running"
        start = _start_ticks(pid)
        if info.get("pid_start") and start and start != info["pid_start"]:
            return f"pid {pid} is no longer running (now another process)"
        return ""
    return f"no heartbeat from {host} for {age:.0f} s" if age > STALE_AFTER_S else ""


def holder_text(info: dict[str, Any]) -> str:
    what = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
    return f"{what}: {info['command']}" if info.get("command") else what


@contextlib.contextmanager
def _guard(folder: Path) -> Iterator[None]:
    """A short exclusive flock on the lock's folder, so that reading, judging and replacing a lock file is
    one step for concurrent newcomers (skipped where the file system has no flock)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no flock on this file system
            pass
        yield
    finally:
        os.close(fd)  # releases the flock


class FileLock:
    """The lock file `path` held by this process (re-entrant within it); `what` names it in messages."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.info: dict[str, Any] = {}
        self.note = ""  # set when a stale lock was taken over
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = {**_me(), "token": uuid.uuid4().hex}
        with _guard(self.path.parent):
            held = _read(self.path)
            if held is not None:
                why = stale_reason(self.path, held)
                if not why:
                    raise FibroclassError(
                        f"{self.what} is being written by another fibroclass process ({holder_text(held)}); "
                        f"wait for it or choose another --out (if that process is gone, delete {self.path})"
                    )
                self.note = f"took over the lock of {self.what} left by a stopped run ({why})"
            tmp = self.path.with_name(f"{self.path.name}.{mine['token']}.tmp")
            tmp.write_text(json.dumps(mine))
            os.replace(tmp, self.path)
        self.info = mine
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {self.path}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        with _guard(self.path.parent):
            held = _read(self.path)
            if held and held.get("token") == self.info.get("token"):
                self.path.unlink(missing_ok=True)


_HELD: dict[Path, list[Any]] = {}  # path -> [lock, depth]: this process's locks (re-entrant)


@contextlib.contextmanager
def _hold(path: Path, what: str) -> Iterator[FileLock]:
    key = path.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield _HELD[key][0]
        finally:
            _HELD[key][1] -= 1
        return
    lock = FileLock(path, what)
    lock.acquire()
    _HELD[key] = [lock, 1]
    try:
        yield lock
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            del _HELD[key]
            lock.release()


def _refuse_if_live(path: Path, what: str) -> None:
    held = _read(path)
    if held is None or path.resolve() in _HELD or not held or stale_reason(path, held):
        return
    raise FibroclassError(
        f"{what} is being written by another fibroclass process ({holder_text(held)}); "
        f"wait for it to finish (if that process is gone, delete {path})"
    )


@contextlib.contextmanager
def writing(out: Path, plate_dirs: Sequence[Path] | None = None) -> Iterator[list[str]]:
    """Hold the output folder `out` for writing; yields notes (stale locks taken over).

    Without `plate_dirs` (a whole run or a merge): `OUT/.fibroclass.lock`, refused while a plate job holds a
    plate of `out`. With `plate_dirs` (`OUT/parts/<plate>` folders of a --plate job): their locks, refused
    while a whole run or a merge holds `out`.
    """
    out = Path(out)
    with contextlib.ExitStack() as stack:
        if plate_dirs is None:
            lock = stack.enter_context(_hold(out / OUT_LOCK, f"output folder {out}"))
            notes = [lock.note] if lock.note else []
            for plate_lock in sorted((out / "parts").glob(f"*/{PLATE_LOCK}")):
                _refuse_if_live(plate_lock, f"plate folder {plate_lock.parent} of {out}")
        else:
            notes = []
            for folder in sorted(set(plate_dirs)):
                lock = stack.enter_context(_hold(folder / PLATE_LOCK, f"plate folder {folder}"))
                notes += [lock.note] if lock.note else []
            _refuse_if_live(out / OUT_LOCK, f"output folder {out}")
        yield notes


__all__ = ["HEARTBEAT_S", "OUT_LOCK", "PLATE_LOCK", "STALE_AFTER_S", "FileLock", "stale_reason", "writing"]
