"""Data-loading defaults and the length measurement that packing and length grouping plan with.

The collator decodes and tiles images, so it runs in dataloader worker processes, off the
training process's critical path. ``sft.dataloader_num_workers``,
``sft.dataloader_prefetch_factor`` and ``sft.dataloader_persistent_workers`` are user
settings; when unset: no workers on CPU pools (the 2-core embedded default has no core to
spare), and on GPU pools the worker's CPU share minus one core for the training loop itself,
at most 8, each keeping 2 batches ready, persistent across epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("vlm_train")

MAX_DEFAULT_WORKERS = 8


def dataloader_defaults(cfg: Any) -> dict[str, Any]:
    """TrainingArguments dataloader fields derived from the job's pool (users override them)."""
    from vlm_train.cluster.pools import load_pool
    from vlm_train.config_base import ConfigError

    try:
        pool = load_pool(cfg.cluster.pool, cfg.cluster.pools_dir)
    except ConfigError as e:  # the pool was checked at submission; a worker without the file loads inline
        log.warning("dataloader defaults: %s; loading batches in the training process", e)
        return {"dataloader_num_workers": 0}
    workers = min(MAX_DEFAULT_WORKERS, pool.cpus_per_worker - 1) if pool.is_gpu else 0
    if workers <= 0:
        return {"dataloader_num_workers": 0}
    return {"dataloader_num_workers": workers, "dataloader_prefetch_factor": 2, "dataloader_persistent_workers": True}


class _Lengths:
    """collate_fn of the measuring loader: token counts of the items (picklable for workers)."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, items: list[Any]) -> list[int]:
        return [self.collator.length(it) for it in items]


def measure_lengths(collator: Any, rows: Any, rank: int, world: int, num_workers: int = 0) -> list[int]:
    """Tokens of every dataset row after truncation (images expanded): each rank measures every
    world-th row in its own dataloader workers, then all ranks exchange their shares."""
    import torch
    from torch.utils.data import DataLoader, Subset

    n = len(rows)
    mine = list(range(rank, n, world))
    loader = DataLoader(Subset(rows, mine), batch_size=8, collate_fn=_Lengths(collator), num_workers=num_workers)
    local = [x for chunk in loader for x in chunk]
    shares = {rank: local}
    dist = torch.distributed
    if world > 1 and dist.is_available() and dist.is_initialized() and dist.get_world_size() == world:
        gathered = [None] * world
        dist.all_gather_object(gathered, local)
        shares = dict(enumerate(gathered))
    out = [0] * n
    for r, share in shares.items():
        for j, length in enumerate(share):
            out[r + j * world] = length
    return out


def cached_lengths(path: Path, key: dict[str, Any], compute) -> list[int]:
    """Lengths stored next to the run's data (a resubmitted run reuses them)."""
    tag = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    f = path / f"lengths-{tag}.json"
    if f.is_file():
        return json.loads(f.read_text())
    lengths = compute()
    try:
        tmp = f.with_suffix(f".{id(lengths)}.tmp")
        tmp.write_text(json.dumps(lengths))
        tmp.replace(f)
    except OSError as e:  # read-only storage: measure again next time
        log.warning("could not store sample lengths at %s: %s", f, e)
    return lengths
