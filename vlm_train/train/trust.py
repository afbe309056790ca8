"""The run directory's trust boundary, checked before a checkpoint is resumed.

Resuming unpickles: DeepSpeed's checkpoint engine loads its model and optimizer states with
``torch.load(weights_only=False)`` (they hold Python objects), and a pickle can run any code.
transformers' own resume files (optimizer, scheduler, RNG) load with ``weights_only=True``.
So a checkpoint is loaded only from a directory that nobody but the job's user could have
written: every file and folder in it, and the folders above it up to the run directory,
owned by this user (or root) and not writable by others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UntrustedCheckpoint(RuntimeError):
    """A checkpoint directory someone other than the job's user could have written."""


def _problem(p: Path, uid: int) -> str | None:
    st = p.lstat()
    if st.st_uid not in (uid, 0):
        return f"{p} is owned by uid {st.st_uid}, not this job's user ({uid})"
    if stat.S_ISLNK(st.st_mode):
        return None  # its target is checked where it lies inside the tree; outside, refused below
    if st.st_mode & stat.S_IWOTH:
        return f"{p} is writable by every user (mode {stat.filemode(st.st_mode)})"
    return None


def check_trusted(checkpoint: str | Path, run_dir: str | Path | None = None) -> None:
    """Raise UntrustedCheckpoint unless ``checkpoint`` (and its parents up to ``run_dir``) are
    owned by this user and not world-writable, and no link in it points outside it."""
    uid = os.getuid()
    root = Path(checkpoint)
    top = Path(run_dir).absolute() if run_dir is not None else None
    chain = [root]
    if top is not None and top in root.absolute().parents:
        chain += [q for q in root.absolute().parents if q == top or top in q.parents]
    problems = [x for x in (_problem(q, uid) for q in chain) if x]
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            problem = _problem(p, uid)
            if problem is None and p.is_symlink() and real_root not in p.resolve().parents:
                problem = f"{p} links outside the checkpoint, to {p.resolve()}"
            if problem:
                problems.append(problem)
    if problems:
        raise UntrustedCheckpoint(
            f"refusing to resume from {root}: resuming unpickles its files, and {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; fix the owner/permissions of the run directory (chmod o-w, chown) if you trust it"
        )
