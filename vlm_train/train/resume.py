"""Resuming a trainer's weights the way they were saved.

transformers 5 writes a checkpoint's ``model.safetensors`` with ``save_pretrained``, which
renames parameters back to the checkpoint layout of the original release (InternVL:
``language_model.model.layers...`` for ``model.language_model.layers...``). The Trainer's own
resume path (without DeepSpeed, whose checkpoint holds its own module names) reads the file
with a plain non-strict ``load_state_dict``: every key misses, nothing is loaded, and the
"resumed" run silently continues from the base weights. Loading the checkpoint through
``from_pretrained`` applies the same renaming backwards; the result is loaded strictly.
"""

from __future__ import annotations

import logging
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
