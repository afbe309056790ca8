"""``run.checkpoints_to_keep`` over every checkpoint folder of a stage, not only Ray's.

Ray Train's ``CheckpointConfig(num_to_keep)`` deletes the checkpoints it registered. Faults
leave others: a save killed mid-upload (a half-written ``checkpoint-NNNNNN``, never
registered), a whole one whose report the controller never collected, and the
``checkpoint-NNNNNN.K`` re-save next to a damaged one (vlm_train/train/callbacks.py). Without
this, each fault leaves a folder behind for good.

What is deleted, of the stage's ``checkpoint-*`` folders ordered by (step, re-save number):
  - a whole one (vlm_train/train/resume.py ``checkpoint_problem``) beyond the newest ``keep``,
  - a damaged or half-written one older than the newest whole one (never chosen again).
Never deleted: the newest whole one; the ones in ``protect`` (the one being resumed from);
any Ray's snapshot names (Ray deletes those itself, and a resubmitted run refuses to start
when a folder its snapshot names is gone); anything not older than Ray's latest, which may
be a save whose report Ray has not collected yet. Without a snapshot (Ray has registered
nothing yet) nothing is deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlm_train.train.resume import checkpoint_key, checkpoint_problem

log = logging.getLogger("vlm_train")

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of what it registered


def _dir_names(node: Any) -> set[str]:
    """Every ``checkpoint_dir_name`` anywhere in Ray's snapshot (registered, latest, pending)."""
    if isinstance(node, dict):
        found = {node["checkpoint_dir_name"]} if isinstance(node.get("checkpoint_dir_name"), str) else set()
        return found.union(*(_dir_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_dir_names(v) for v in node))
    return set()


def ray_checkpoints(stage_dir: Path) -> tuple[set[str], str | None] | None:
    """(folder names Ray's snapshot refers to, its latest), or None without a readable snapshot."""
    try:
        snap = json.loads((stage_dir / SNAPSHOT).read_text())
    except (OSError, ValueError):
        return None
    latest = (snap.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name") if isinstance(snap, dict) else None
    return _dir_names(snap), latest


def prune_checkpoints(stage_dir: str | Path, keep: int | None, protect: Iterable[str | Path] = ()) -> list[Path]:
    """Delete what the module docstring says; returns the folders deleted, oldest first."""
    stage_dir = Path(stage_dir)
    ray = ray_checkpoints(stage_dir)
    if keep is None or ray is None:
        return []
    registered, ray_latest = ray
    folders = sorted((p for p in stage_dir.glob("checkpoint-*") if p.is_dir() and checkpoint_key(p.name)),
                     key=lambda p: checkpoint_key(p.name))
    whole = [p for p in folders if checkpoint_problem(p) is None]
    if not whole:
        return []
    kept = {p.name for p in whole[-max(keep, 1):]} | registered | {Path(p).name for p in protect}
    newest = checkpoint_key(whole[-1].name)
    bound = min(newest, checkpoint_key(ray_latest)) if ray_latest and checkpoint_key(ray_latest) else newest
    gone = []
    for p in folders:
        if p.name in kept or checkpoint_key(p.name) >= bound:
            continue
        shutil.rmtree(p, ignore_errors=True)
        log.info("deleted checkpoint %s (%s)", p, "beyond run.checkpoints_to_keep" if p in whole else "damaged or half-written")
        gone.append(p)
    return gone

