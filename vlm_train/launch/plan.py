"""What a job asks of the cluster: its placement and, per training stage, its batch sizes.

No Ray here: ``--dry-run`` and the config checks run before anything starts.
"""

from __future__ import annotations

from typing import Any

from vlm_train.cluster.pools import Placement, load_pool, placement_for
from vlm_train.config import ConfigError, JobConfig
from vlm_train.train.args import STAGE_DEFAULTS


def placement(cfg: JobConfig) -> Placement:
    pool = load_pool(cfg.cluster.pool, cfg.cluster.pools_dir)
    return placement_for(pool, cfg.cluster.nodes, cfg.cluster.workers_per_node)


def stage_batches(cfg: JobConfig, stage: str, world_size: int) -> dict[str, Any]:
    """Batch sizes of one training stage (TRL's meaning: GRPO batches count completions; with
    ``sft.packing`` an SFT batch counts packed rows, ``batch_unit`` says which)."""
    kw = {**STAGE_DEFAULTS[stage], **getattr(cfg, stage)}
    micro = int(kw["per_device_train_batch_size"])
    accum = int(kw.get("gradient_accumulation_steps", 1))
    out = {"per_device_batch_size": micro, "gradient_accumulation_steps": accum, "global_batch_size": micro * accum * world_size,
           "batch_unit": "samples"}
    if stage == "sft":
        from vlm_train.train.sft_options import split_sft

        opts, _ = split_sft(getattr(cfg, stage))
        if opts.packing:  # a batch is rows of whole samples; how many samples a row holds varies
            rows = out["global_batch_size"]
            out.update(batch_unit="packed rows", row_tokens=int(kw["max_length"]),
                       max_tokens_per_step=rows * int(kw["max_length"]))
    if stage == "grpo":
        n = int(kw["num_generations"])
        steps = kw.get("steps_per_generation") or accum
        generation = int(kw.get("generation_batch_size") or micro * world_size * steps)
        if generation % n:
            raise ConfigError("grpo.num_generations", f"{n} does not divide the generation batch of {generation} completions "
                                                      f"(per_device_train_batch_size {micro} x {world_size} workers x {steps} steps)")
        out.update(batch_unit="completions", num_generations=n, generation_batch_size=generation, prompts_per_generation=generation // n)
    return out


def describe(cfg: JobConfig) -> dict[str, Any]:
    """What the job would ask of Ray: printed by --dry-run."""
    p = placement(cfg)
    return {
        **p.describe(),
        "zero_stage": cfg.deepspeed.zero_stage,
        "stages": {s: stage_batches(cfg, s, p.num_workers) for s in cfg.training_stages},
        "evaluate": cfg.evaluate,
        "run_dir": str(cfg.run_dir),
    }
