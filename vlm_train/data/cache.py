"""Cache of per-sample model inputs (token ids, labels, decoded and tiled/patchified pixels).

Decoding and tiling an image costs far more than tokenising its text, and the result is the
same every epoch (no random augmentation), so ``data.cache`` keeps it:

- ``none``: every epoch re-reads and re-processes every image.
- ``memory``: a dict in the process that builds batches. With dataloader workers, each
  worker keeps what it built; workers must then be persistent (the trainer sets
  ``dataloader_persistent_workers``) or the cache would die with them at each epoch end.
- ``disk``: one safetensors file per sample under a directory on local disk, shared by all
  workers of a node and kept across epochs, restarts and resubmissions.

Keys hash the sample's JSON together with the input builder's settings, so a changed
``max_length`` or pixel budget never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

MODES = ("none", "memory", "disk")


def cache_key(sample_json: str, settings: dict[str, Any]) -> str:
    h = hashlib.sha256(sample_json.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


class EncodingCache:
    """get/put of ``{name: tensor}`` dicts by key; ``mode`` is one of MODES."""

    def __init__(self, mode: str = "none", directory: str | os.PathLike | None = None):
        if mode not in MODES:
            raise ValueError(f"data.cache must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "disk" and directory is None:
            raise ValueError("data.cache: disk needs a directory")
        self.mode = mode
        self.dir = Path(directory) if directory is not None else None
        self._mem: dict[str, dict[str, torch.Tensor]] = {}
        if self.dir is not None and mode == "disk":
            self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        if self.mode == "memory":
            return self._mem.get(key)
        if self.mode == "disk":
            path = self.dir / f"{key}.safetensors"
            if path.is_file():
                from safetensors.torch import load_file

                return load_file(str(path))
        return None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.mode == "memory":
            self._mem[key] = tensors
        elif self.mode == "disk":
            from safetensors.torch import save_file

            # Write then rename: concurrent workers never read a half-written entry.
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
            os.close(fd)
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
            os.replace(tmp, self.dir / f"{key}.safetensors")
