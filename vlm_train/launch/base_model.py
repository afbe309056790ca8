"""``model.path: tiny``: the family's random tiny checkpoint, built once in the run dir."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from vlm_train.config import ConfigError, JobConfig
from vlm_train.config_base import to_dict
from vlm_train.launch.same_job import changed, flat
from vlm_train.runstate import read_json, write_json_atomic

log = logging.getLogger("vlm_train")


def materialise_model(cfg: JobConfig, family: Any) -> JobConfig:
    """The config with ``model.path`` pointing at a real checkpoint (built here if tiny)."""
    if cfg.model.path != "tiny":
        return cfg
    out = cfg.run_dir.base_model
    t = cfg.model.tiny
    # The settings it was built with: a run directory never trains on a tiny model other than
    # the one its config describes (a changed model.tiny is refused, not silently ignored).
    built, wanted = out / "tiny.json", {"model.family": cfg.model.family, **flat(to_dict(t), "model.tiny")}
    if (out / "config.json").is_file():
        old = read_json(built)
        if old is not None and old != wanted:
            diff = ", ".join(changed(old, wanted))
            raise ConfigError("model.tiny", f"{out} was built with other settings ({diff}); set another run.name "
                              f"(or run.storage_path), or delete {cfg.run_dir} to start over", cfg.source)
    else:
        extra = {"max_tiles": t.max_tiles} if t.max_tiles is not None else {}
        if t.vision_pretrain_steps:
            extra["vision_pretrain_steps"] = t.vision_pretrain_steps
        if t.vision_pretrain_patterns:
            extra["vision_pretrain_patterns"] = True
        t0 = time.perf_counter()
        family.tiny(out, seed=t.seed, image_size=t.image_size, vision_hidden=t.vision_hidden, text_hidden=t.text_hidden,
                    layers=t.layers, **extra)
        notes = out / "vision_pretrain.txt"
        log.info("tiny %s model built in %.0f s%s", cfg.model.family, time.perf_counter() - t0,
                 f" ({notes.read_text().strip()})" if notes.is_file() else "")
        write_json_atomic(built, wanted)
    return replace(cfg, model=replace(cfg.model, path=str(out)))
