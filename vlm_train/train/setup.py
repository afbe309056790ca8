"""Per-worker setup shared by the SFT and GRPO loops: environment, TRL args, model, data.

Order matters under ZeRO-3 (docs/design.md, "Load order under ZeRO-3"): the TRL config (which registers the
DeepSpeed config globally) is built BEFORE the model is loaded, so ``from_pretrained``
partitions parameters at load; and on CPU ``deepspeed.comm`` is initialised first, or
zero.Init sees world size 1 and fails its batch-size check.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlm_train.config import JobConfig
from vlm_train.data.sample import Sample
from vlm_train.models.common import freeze_groups, has_cuda, resolve_dtype

log = logging.getLogger("vlm_train")


@dataclass
class WorkerInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def worker_info() -> WorkerInfo:
    return WorkerInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def init_worker_env(cfg: JobConfig) -> WorkerInfo:
    """Distributed and library environment of one training worker."""
    info = worker_info()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if cfg.deepspeed.config is not None:
        import deepspeed

        # Ray already created the torch process group; this makes deepspeed.comm use it.
        deepspeed.init_distributed(dist_backend="nccl" if has_cuda() else "gloo")
    torch.manual_seed(cfg.run.seed + info.rank)
    return info


def deepspeed_dict(cfg: JobConfig) -> dict[str, Any] | None:
    if cfg.deepspeed.config is None:
        return None
    ds = json.loads(Path(cfg.deepspeed.config).read_text())
    if not has_cuda():
        # CPU: fp32 (bf16 autocast on CPU is slow and fp16 is unsupported), no offload pinning.
        ds.pop("fp16", None)
        ds["bf16"] = {"enabled": False}
        zo = ds.get("zero_optimization", {})
        for k in ("offload_optimizer", "offload_param"):
            if k in zo:
                zo[k]["pin_memory"] = False
    return ds


def trl_common_kwargs(cfg: JobConfig, stage: str, info: WorkerInfo) -> dict[str, Any]:
    """TrainingArguments fields the launcher owns (users set the rest in sft:/grpo:)."""
    out = cfg.run_dir / "work" / stage / f"rank{info.rank}"
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(cfg.run_dir / "tensorboard" / stage)
    cuda = has_cuda()
    kw: dict[str, Any] = {
        "output_dir": str(out),
        "deepspeed": deepspeed_dict(cfg),
        "use_cpu": not cuda,
        "report_to": ["tensorboard"],  # TensorBoardCallback writes on world rank 0 only
        "seed": cfg.run.seed,
        "include_num_input_tokens_seen": "non_padding",
        "save_only_model": False,
        "save_total_limit": 1,  # local copies only; Ray storage keeps run.checkpoints_to_keep
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
    }
    if not cuda:
        kw.update(bf16=False, fp16=False)
    return kw


def load_model(cfg: JobConfig, family: Any) -> tuple[Any, Any]:
    model_cfg = cfg.model
    dtype = resolve_dtype(model_cfg.dtype)
    model, processor = family.load(model_cfg, dtype=dtype)
    frozen = freeze_groups(model, family.module_groups, vars(model_cfg.freeze))
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


def read_samples(path: Path) -> list[Sample]:
    return [Sample.from_json(line) for line in path.read_text().splitlines() if line.strip()]


def rows(samples: list[Sample]):
    """A datasets.Dataset of JSON-encoded samples (our collator decodes them)."""
    from datasets import Dataset

    return Dataset.from_list([{"sample": s.to_json()} for s in samples])


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
