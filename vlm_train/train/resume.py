"""Resuming a trainer's weights the way they were saved.

transformers 5 writes a checkpoint's ``model.safetensors`` with ``save_pretrained``, which
renames parameters back to the checkpoint layout of the original release (e.g.
``language_model.model.layers...`` for ``model.language_model.layers...``). The Trainer's own
resume path (without DeepSpeed, whose checkpoint holds its own module names) reads the file
with a plain non-strict ``load_state_dict``: every key misses, nothing is loaded, and the
"resumed" run silently continues from the base weights. Loading the checkpoint through
``from_pretrained`` applies the same renaming backwards; the result is loaded strictly.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("vlm_train")


def install_weight_resume(trainer: Any) -> Any:
    """Make ``trainer.train(resume_from_checkpoint=...)`` restore full-model weights exactly."""
    original = trainer._load_from_checkpoint

    def load(resume_from_checkpoint: str, model: Any = None) -> None:
        model = model if model is not None else trainer.model
        ckpt = Path(resume_from_checkpoint)
        full = (ckpt / "config.json").is_file() and any(ckpt.glob("model*.safetensors"))
        if not full or hasattr(model, "peft_config") or getattr(trainer, "is_deepspeed_enabled", False):
            return original(resume_from_checkpoint, model=model)
        param = next(model.parameters())
        fresh = type(model).from_pretrained(str(ckpt), dtype=param.dtype, use_safetensors=True)
        model.load_state_dict(fresh.state_dict(), strict=True)
        del fresh
        log.info("resumed weights from %s", ckpt)

    trainer._load_from_checkpoint = load
    return trainer


# ---- which checkpoint to resume: never a truncated or half-written one ----------------------

MANIFEST = "MANIFEST.rank{rank}.json"


def checkpoint_key(name: str) -> tuple[int, int] | None:
    """(step, re-save number) of a ``checkpoint-NNNNNN[.K]`` folder name, None for any other:
    the order of a stage's checkpoints (``.10`` after ``.9``, which names alone would not give)."""
    m = re.fullmatch(r"checkpoint-(\d+)(?:\.(\d+))?", name)
    return (int(m[1]), int(m[2] or 0)) if m else None


def write_manifest(ckpt_dir: str | Path, rank: int, world_size: int = 1) -> None:
    """List every file of this rank's checkpoint folder with its size, written last (before
    the folder is reported to Ray): a folder whose manifest is missing was never finished, and
    a file shorter than listed was truncated after. ``world_size`` names the manifests a whole
    checkpoint has: a folder holding some ranks' parts only (a rank killed while uploading)
    is not whole either."""
    import json

    root = Path(ckpt_dir)
    files = {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
             if p.is_file() and not p.name.startswith(("MANIFEST.", ".MANIFEST."))}
    tmp = root / f".{MANIFEST.format(rank=rank)}.tmp"
    tmp.write_text(json.dumps({"world_size": world_size, "files": files}))
    tmp.replace(root / MANIFEST.format(rank=rank))


def checkpoint_problem(ckpt_dir: str | Path) -> str | None:
    """Why ``ckpt_dir`` cannot be resumed (None: every rank's manifest checks out)."""
    import json

    root = Path(ckpt_dir)
    manifests = sorted(root.glob("MANIFEST.rank*.json"))
    if not manifests:
        return f"{root}: no manifest (a checkpoint whose writing never finished)"
    if not (root / "trainer_state.json").is_file():
        return f"{root}: no trainer_state.json"
    for m in manifests:
        try:
            entry = json.loads(m.read_text())
        except (OSError, ValueError) as e:
            return f"{m}: unreadable manifest ({e})"
        # Manifests of the first version listed the files alone, without the world size.
        files = entry["files"] if "files" in entry else entry
        world = int(entry.get("world_size", 1)) if "files" in entry else 1
        missing = [r for r in range(world) if not (root / MANIFEST.format(rank=r)).is_file()]
        if missing:
            return f"{root}: no manifest of rank {missing[0]} of {world} (that rank never finished writing)"
        for name, size in files.items():
            p = root / name
            if not p.is_file():
                return f"{p}: missing"
            if p.stat().st_size != size:
                return f"{p}: {p.stat().st_size} bytes, written as {size} (truncated)"
    return None


def choose_checkpoint(latest: str | Path | None, stage_dir: str | Path) -> Path | None:
    """The newest whole checkpoint of the stage: ``latest`` (Ray's, None when Ray has none) or
    a newer whole ``checkpoint-*`` folder of the stage's storage; otherwise the newest whole one
    older than it. None: none is whole.

    Newer than Ray's latest: Ray Train registers a checkpoint only when its controller collects
    every worker's report, so a worker killed right after its upload leaves a whole checkpoint
    Ray never registered. Its manifests (every rank's, every file's size) prove it whole, and
    it is a state of this run (attempts only continue from its own checkpoints).
    """
    if latest is not None:
        latest = Path(latest)
        if not any(latest.glob("MANIFEST.rank*.json")) and (latest / "trainer_state.json").is_file():
            return latest  # reported by a version that wrote no manifests: Ray registered it whole
    folders = [p for p in Path(stage_dir).glob("checkpoint-*") if p.is_dir() and checkpoint_key(p.name)]
    if latest is not None and latest not in folders:
        folders.append(latest)
    # Ray's latest under another name (a downloaded copy of remote storage) is tried first.
    folders.sort(key=lambda p: checkpoint_key(p.name) or (float("inf"), 0), reverse=True)
    for cand in folders:
        why = checkpoint_problem(cand)
        if why is None:
            if latest is None or cand != latest:
                log.warning("resuming from the newest whole checkpoint %s (Ray's latest: %s)", cand, latest)
            return cand
        log.warning("not resuming from %s: %s", cand, why)
    return None
