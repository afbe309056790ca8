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
        check_generation_cycle(cfg, kw, steps, accum)
    return out


def check_generation_cycle(cfg: JobConfig, kw: dict[str, Any], steps_per_generation: int, accum: int) -> None:
    """A GRPO checkpoint must fall between generation batches, or its resume is not exact.

    TRL generates once per ``steps_per_generation x num_iterations`` micro-batches and keeps
    the rollouts in memory for the rest of the cycle; a checkpoint does not hold them. A run
    resumed mid-cycle samples new rollouts (from the updated policy) where the uninterrupted
    run reused the buffered ones: the loss, reward and sampling sequence part ways.
    """
    cycle = steps_per_generation * int(kw.get("num_iterations", 1))
    if cycle <= accum and accum % cycle == 0:
        return  # every optimizer step ends a cycle
    why = (f"a checkpoint must fall between generation batches (every {cycle} micro-batches: steps_per_generation "
           f"{steps_per_generation} x num_iterations {kw.get('num_iterations', 1)}; {accum} per optimizer step), "
           "or its resume samples new rollouts where the run reused buffered ones")
    save = float(kw["save_steps"])  # below 1: a share of max_steps, rounded by the Trainer
    if kw.get("save_strategy", "steps") == "steps" and save >= 1 and (int(save) * accum) % cycle:
        raise ConfigError("grpo.save_steps", f"{kw['save_steps']}: {why}")
    stop = cfg.run.stop_at_step
    if stop is not None and (stop * accum) % cycle:
        raise ConfigError("run.stop_at_step", f"{stop} (grpo): {why}")


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
