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
from vlm_train.models.common import has_cuda
from vlm_train.train.args import build_training_args
from vlm_train.train.callbacks import ThroughputCallback, stage_callbacks
from vlm_train.train.dataset import read_samples, rows
from vlm_train.train.loop import train_and_finish
from vlm_train.train.model import load_model, lora_config
from vlm_train.train.worker import init_worker_env

log = logging.getLogger("vlm_train")


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point. ``config``: {"job": JobConfig dict, "data": PreparedData dict}."""
    from trl import SFTTrainer

    cfg = JobConfig.from_dict(config["job"])
    info = init_worker_env(cfg, "sft")
    family = get_family(cfg.model.family)
    args = build_training_args(cfg, "sft", info.rank, has_cuda())  # before the model: ZeRO-3 partitions at load
    model, processor = load_model(cfg, family)
    data = config["data"]
    train = read_samples(Path(data["train"]))
    evals = read_samples(Path(data["eval"])) if data.get("eval") and args.eval_strategy != "no" else None
    collator = family.make_inputs(processor, InputsConfig.from_job(cfg, data["image_roots"], args.max_length))

    callbacks, stopper = stage_callbacks(cfg, "sft")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=rows(train),
        eval_dataset=rows(evals) if evals else None,
        data_collator=collator,
        processing_class=processor,
        peft_config=lora_config(cfg, family),
        callbacks=callbacks,
    )
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback())

    train_and_finish(trainer, cfg, info, "sft", stopper, family, processor)
