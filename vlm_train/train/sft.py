"""The SFT worker loop: TRL's SFTTrainer (with our batching, vlm_train.train.sft_trainer)
under DeepSpeed, one process per Ray Train worker.

Runs inside ``ray.train.torch.TorchTrainer``; Ray has set RANK/WORLD_SIZE/MASTER_* and the
process group. Checkpoints are reported to Ray as they are written, and a restarted worker
group (or the same job submitted again with the same run name and storage) continues from
the latest one instead of step 0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.data.cache import EncodingCache
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.models.common import has_cuda
from vlm_train.train import segment_attention
from vlm_train.train.args import build_training_args
from vlm_train.train.callbacks import ThroughputCallback, stage_callbacks
from vlm_train.train.collator import SFTCollator
from vlm_train.train.dataloading import cached_lengths, measure_lengths
from vlm_train.train.dataset import dataset_of, read_samples, rows
from vlm_train.train.heldout import add_heldout_eval
from vlm_train.train.loop import train_and_finish
from vlm_train.train.model import load_model, lora_config
from vlm_train.train.nonfinite import NonFiniteGuard
from vlm_train.train.sft_options import SFTOptions, split_sft
from vlm_train.train.sft_trainer import VLMSFTTrainer
from vlm_train.train.worker import init_worker_env

log = logging.getLogger("vlm_train")


def make_collator(cfg: JobConfig, family: Any, processor: Any, image_roots: list[str], max_length: int,
                  opts: SFTOptions, model: Any = None) -> SFTCollator:
    """The family's input builder behind our padded/packed collator, with the input cache."""
    inputs_cfg = InputsConfig.from_job(cfg, image_roots, max_length)
    builder = family.make_inputs(processor, inputs_cfg)
    cache_dir = cfg.data.cache_dir or str(cfg.run_dir.inputs_cache)
    impl = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    varlen = "flash" in impl or impl == segment_attention.NAME
    # What the cached inputs depend on: the builder's settings, the checkpoint's processor.
    settings = {"family": family.name, "model": cfg.model.path, "max_pixels": cfg.model.max_pixels,
                **dataclasses.asdict(inputs_cfg)}
    return SFTCollator(
        builder, family.merge_visuals, max_length=max_length, packed=opts.packed, weighting=opts.loss_weighting,
        cache=EncodingCache(cfg.data.cache, cache_dir if cfg.data.cache == "disk" else None),
        varlen_kwargs=varlen, settings=settings,
    )


def train_rows(samples: list, lengths: list[int] | None):
    """The dataset the trainer iterates: JSON samples (and their lengths for length grouping)."""
    if lengths is None:
        return rows(samples)
    return dataset_of([{"sample": s.to_json(), "length": n} for s, n in zip(samples, lengths, strict=True)])


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point. ``config``: {"job": JobConfig dict, "data": PreparedData dict}."""
    from vlm_train.train.value_loss import ValueSmoothedLoss

    marks = {"worker_entered": time.time()}
    cfg = JobConfig.from_dict(config["job"])
    info = init_worker_env(cfg, "sft")
    marks["env_ready"] = time.time()
    family = get_family(cfg.model.family)
    opts, _ = split_sft(cfg.sft, cfg.source)
    args = build_training_args(cfg, "sft", info.rank, has_cuda())  # before the model: ZeRO-3 partitions at load
    model, processor = load_model(cfg, family)
    marks["model_loaded"] = time.time()
    data = config["data"]
    train = read_samples(Path(data["train"]))
    evals = read_samples(Path(data["eval"])) if data.get("eval") and args.eval_strategy != "no" else None
    if opts.packed and segment_attention.use_segment_attention(model):
        log.info("packed rows on sdpa: attention runs per sample (%s)", segment_attention.NAME)
    guard = NonFiniteGuard(cfg.run.on_nonfinite)
    inner = make_collator(cfg, family, processor, data["image_roots"], args.max_length, opts, model)
    collator = guard.wrap_collator(inner)
    lengths = None
    if opts.needs_lengths:
        lengths = cached_lengths(
            Path(data["train"]).parent, {"train": data["train"], **inner.settings},
            lambda: measure_lengths(inner, rows(train), info.rank, info.world_size, args.dataloader_num_workers),
        )

    sigma = cfg.loss.coordinate_sigma
    values = family.value_tokens(processor) if family.value_tokens is not None else {}
    value_loss = ValueSmoothedLoss(values, sigma) if sigma > 0 and values else None
    if sigma > 0 and not values:
        log.warning("loss.coordinate_sigma=%s: this tokenizer has no value tokens; plain cross-entropy", sigma)
    callbacks, stopper = stage_callbacks(cfg, "sft")
    trainer = VLMSFTTrainer(
        options=opts,
        lengths=lengths,
        model=model,
        args=args,
        train_dataset=train_rows(train, lengths),
        eval_dataset=rows(evals) if evals else None,
        data_collator=collator,
        processing_class=processor,
        peft_config=lora_config(cfg, family),
        callbacks=callbacks,
        value_loss=value_loss,
    )
    trainer.lr_groups, trainer.lr_scales = family.module_groups, cfg.model.lr_scale
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback())
    add_heldout_eval(trainer, cfg, args, info, family, processor, data)
    guard.install(trainer)

    train_and_finish(trainer, cfg, info, "sft", stopper, family, processor, guard=guard, marks=marks)
