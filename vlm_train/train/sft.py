"""The SFT worker loop: TRL's SFTTrainer under DeepSpeed, one process per Ray Train worker.

Runs inside ``ray.train.torch.TorchTrainer``; Ray has set RANK/WORLD_SIZE/MASTER_* and the
process group. Checkpoints are reported to Ray as they are written, and a restarted worker
group (or the same job submitted again with the same run name and storage) continues from
the latest one instead of step 0.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.models import get_family
from vlm_train.train import setup
from vlm_train.train.callbacks import FaultInjectionCallback, RayCheckpointCallback, StopAtStepCallback, ThroughputCallback
from vlm_train.train.final import save_final

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


def record_start(cfg: JobConfig, info: setup.WorkerInfo, stage: str, step: int) -> None:
    """Append where each attempt (first run, restart, resubmission) started: the resume record."""
    if info.is_main:
        path = cfg.run_dir / "stages" / f"{stage}.resumes.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"start_step": step}) + "\n")


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point. ``config``: {"job": JobConfig dict, "data": PreparedData dict}."""
    import ray.train
    from trl import SFTTrainer

    cfg = JobConfig.from_dict(config["job"])
    info = setup.init_worker_env(cfg)
    family = get_family(cfg.model.family)
    args = build_args(cfg, info)  # before the model: ZeRO-3 partitions at load
    model, processor = setup.load_model(cfg, family)
    data = config["data"]
    train = setup.read_samples(Path(data["train"]))
    evals = setup.read_samples(Path(data["eval"])) if data.get("eval") and args.eval_strategy != "no" else None
    collator = family.make_inputs(processor, cfg, image_roots=data["image_roots"], max_length=args.max_length)

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

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start_step = int(json.loads((Path(d) / "trainer_state.json").read_text())["global_step"])
            log.info("resuming SFT from checkpoint at step %d", start_step)
            record_start(cfg, info, "sft", start_step)
            result = trainer.train(resume_from_checkpoint=d)
    else:
        start_step = 0
        record_start(cfg, info, "sft", 0)
        result = trainer.train()

    # A run stopped early (preemption aid) leaves no final model: it is not finished.
    if not stopper.stopped:
        save_final(trainer, cfg, family, processor, stage="sft", info=info)
    if info.is_main:
        status = {
            "stage": "sft",
            "start_step": start_step,
            "global_step": trainer.state.global_step,
            "max_steps": trainer.state.max_steps,
            "complete": not stopper.stopped,
            "train_loss": result.training_loss,
            "log_history": trainer.state.log_history,
        }
        path = cfg.run_dir / "stages" / "sft.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(status, indent=2))
    setup.barrier()
