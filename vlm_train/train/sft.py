"""The SFT worker loop: TRL's SFTTrainer under DeepSpeed, one process per Ray Train worker.

Runs inside ``ray.train.torch.TorchTrainer``; Ray has set RANK/WORLD_SIZE/MASTER_* and the
process group. Checkpoints are reported to Ray as they are written, and a restarted worker
group (or the same job submitted again with the same run name and storage) continues from
the latest one instead of step 0.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.train import setup
from vlm_train.train.callbacks import (
    FaultInjectionCallback,
    RayCheckpointCallback,
    StopAtStepCallback,
    ThroughputCallback,
)
from vlm_train.train.loop import train_and_finish

log = logging.getLogger("vlm_train")

# SFT defaults where TRL's own don't suit VLM fine-tuning on these jobs; sft: overrides all.
SFT_DEFAULTS: dict[str, Any] = {
    "max_length": 2048,
    "per_device_train_batch_size": 2,
    "learning_rate": 2e-5,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 50,
    "gradient_checkpointing": False,
    "dataset_kwargs": {"skip_prepare_dataset": True},
}


def build_args(cfg: JobConfig, info: setup.WorkerInfo):
    from trl import SFTConfig

    kw = {**SFT_DEFAULTS, **cfg.sft, **setup.trl_common_kwargs(cfg, "sft", info)}
    kw["dataset_kwargs"] = {**(kw.get("dataset_kwargs") or {}), "skip_prepare_dataset": True}
    if not setup.has_cuda():
        kw.update(bf16=False, fp16=False)
    return SFTConfig(**kw)


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point. ``config``: {"job": JobConfig dict, "data": PreparedData dict}."""
    from trl import SFTTrainer

    cfg = JobConfig.from_dict(config["job"])
    info = setup.init_worker_env(cfg)
    family = get_family(cfg.model.family)
    args = build_args(cfg, info)  # before the model: ZeRO-3 partitions at load
    model, processor = setup.load_model(cfg, family)
    data = config["data"]
    train = setup.read_samples(Path(data["train"]))
    evals = setup.read_samples(Path(data["eval"])) if data.get("eval") and args.eval_strategy != "no" else None
    collator = family.make_inputs(processor, InputsConfig.from_job(cfg, data["image_roots"], args.max_length))

    stopper = StopAtStepCallback(cfg.run.stop_at_step)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=setup.rows(train),
        eval_dataset=setup.rows(evals) if evals else None,
        data_collator=collator,
        processing_class=processor,
        peft_config=setup.lora_config(cfg, family),
        callbacks=[
            RayCheckpointCallback(),
            FaultInjectionCallback(cfg.run.fail_at_step, cfg.run_dir / "work" / "sft" / "failure_injected"),
            stopper,
        ],
    )
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback())

    train_and_finish(trainer, cfg, info, "sft", stopper, family, processor)
