"""``model.path: tiny``: the family's random tiny checkpoint, built once in the run dir."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from vlm_train.config import JobConfig

log = logging.getLogger("vlm_train")


def materialise_model(cfg: JobConfig, family: Any) -> JobConfig:
    """The config with ``model.path`` pointing at a real checkpoint (built here if tiny)."""
    if cfg.model.path != "tiny":
        return cfg
    out = cfg.run_dir.base_model
    if not (out / "config.json").is_file():
        t = cfg.model.tiny
        extra = {"max_tiles": t.max_tiles} if t.max_tiles is not None else {}
        if t.vision_pretrain_steps:
            extra["vision_pretrain_steps"] = t.vision_pretrain_steps
        t0 = time.perf_counter()
        family.tiny(out, seed=t.seed, image_size=t.image_size, vision_hidden=t.vision_hidden, text_hidden=t.text_hidden,
                    layers=t.layers, **extra)
        notes = out / "vision_pretrain.txt"
        log.info("tiny %s model built in %.0f s%s", cfg.model.family, time.perf_counter() - t0,
                 f" ({notes.read_text().strip()})" if notes.is_file() else "")
    return replace(cfg, model=replace(cfg.model, path=str(out)))
