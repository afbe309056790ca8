"""One training stage on Ray Train: the TorchTrainer, its storage, checkpoints and failures."""

from __future__ import annotations

import logging
from typing import Any

from vlm_train.cluster.pools import Placement
from vlm_train.config import JobConfig, dump_config
from vlm_train.launch.console import ProgressPrinter
from vlm_train.launch.placement_wait import wait_for_placement
from vlm_train.launch.plan import placement, stage_batches
from vlm_train.launch.ray_env import connect_ray, worker_env
from vlm_train.redact import strip_secrets

log = logging.getLogger("vlm_train")


def train_fn(stage: str):
    """The Ray Train per-worker loop of a stage."""
    if stage == "sft":
        from vlm_train.train.sft import train_loop
    else:
        from vlm_train.train.grpo import train_loop
    return train_loop


def torch_config(p: Placement):
    """Ray Train's torch backend for a placement: NCCL on GPUs, gloo on CPU workers."""
    from ray.train.torch import TorchConfig

    return TorchConfig(backend="nccl" if p.use_gpu else "gloo")


def run_stage(cfg: JobConfig, stage: str, extra: dict[str, Any] | None = None):
    """Run one training stage on Ray Train; returns ray.train.Result (raises on failure).

    Ray keeps the stage's checkpoints in ``<run dir>/<stage>/``; a restarted worker group
    and a resubmitted job both resume from the latest one there.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    p = placement(cfg)
    cfg.run_dir.root.mkdir(parents=True, exist_ok=True)
    cfg.run_dir.config.write_text(dump_config(cfg))
    connect_ray(cfg, p)
    wait_for_placement(p, cfg.cluster.placement_timeout_s)
    # Ray keeps train_loop_config in its state files and shows it in the dashboard: no secrets.
    job, dropped = strip_secrets(cfg.to_dict())
    for key in dropped:
        log.warning("%s is not sent to the workers; give it to them as an environment variable", key)
    trainer = TorchTrainer(
        train_fn(stage),
        train_loop_config={"job": job, **(extra or {})},
        torch_config=torch_config(p),
        scaling_config=ScalingConfig(**p.scaling_config_kwargs()),
        run_config=RunConfig(
            name=cfg.run_dir.ray_stage(stage).name,
            storage_path=str(cfg.run_dir.ray_stage(stage).parent),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.checkpoints_to_keep),
            worker_runtime_env={"env_vars": worker_env(p)},
        ),
    )
    steps = getattr(cfg, stage).get("max_steps", "?")
    b = stage_batches(cfg, stage, p.num_workers)
    log.info("%s: %d workers on pool %s, %s steps of %d %s, logs in %s",
             stage, p.num_workers, p.pool.name, steps, b["global_batch_size"], b["batch_unit"], cfg.run_dir.logs / stage)
    with ProgressPrinter(stage, cfg.run_dir.progress(stage)):
        return trainer.fit()
