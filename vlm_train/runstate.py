"""Run-directory state that survives being killed at any instant, and one driver per run.

State files (stages/*.json, report.json, prepared.json, the final model's ``MODEL`` pointer)
are written to a unique temporary file in the same folder, flushed to disk and renamed over
the old one (``os.replace`` is atomic on POSIX filesystems), so a reader sees the old or the
new content, never half of one. A file that is truncated anyway (written by an older version,
a disk filling up) reads as missing: its state is re-derived or the work redone, never a
crash on every resubmission.

``run_lock`` is held by the driver for its whole life: a second driver on the same
``run.storage_path/run.name`` is refused while the first runs. It is a kernel ``flock`` on
``<run_dir>/.driver.lock``, released by the kernel when its holder dies however it dies, so
the lock of a dead driver is taken over by the next one without anyone deleting a file
(on NFS, flock maps to NFS locks, which the server frees when the holder's lease lapses).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("vlm_train")

LOCK_NAME = ".driver.lock"


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (unique temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2))


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``; None when it is missing, truncated or not JSON (logged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        log.warning("%s is damaged (%s): treating it as missing; its state is re-derived", path, e)
        return None


class RunLocked(RuntimeError):
    """Another live driver holds the run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the run's driver lock for the ``with`` block; RunLocked if a live driver has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RunLocked(
                f"{run_dir} is in use by another driver ({holder}); wait for it to finish, stop it, or pick "
                "another run.name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the flock
