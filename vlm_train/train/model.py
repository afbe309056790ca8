"""The model a stage trains: loaded in the configured dtype, groups frozen, LoRA config."""

from __future__ import annotations

import logging
from typing import Any

import torch

from vlm_train.config import JobConfig, ModelConfig
from vlm_train.models.common import freeze_groups, has_cuda

log = logging.getLogger("vlm_train")


def load_base(model_cfg: ModelConfig, family: Any) -> tuple[Any, Any]:
    """Model and processor of ``model_cfg.path`` in the dtype resolved for this device."""
    return family.load(model_cfg, dtype=getattr(torch, model_cfg.resolved_dtype(has_cuda())))


def load_model(cfg: JobConfig, family: Any) -> tuple[Any, Any]:
    model, processor = load_base(cfg.model, family)
    frozen = freeze_groups(model, family.module_groups, vars(cfg.model.freeze))
    if frozen:
        log.info("frozen parameter tensors per group: %s", frozen)
    return model, processor


def lora_config(cfg: JobConfig, family: Any):
    """A peft LoraConfig for the trainer (TRL then applies the ZeRO-3 LoRA fixes itself)."""
    if not cfg.model.lora.enabled:
        return None
    from peft import LoraConfig

    lc = cfg.model.lora
    targets: Any = lc.target_modules or family.lora_targets
    if isinstance(targets, list) and len(targets) == 1 and any(c in targets[0] for c in "*()|\\"):
        targets = targets[0]  # one regex string
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=targets, task_type="CAUSAL_LM")
