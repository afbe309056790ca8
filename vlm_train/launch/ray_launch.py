"""Driver side of a stage: Ray connection, TorchTrainer wiring, storage, failure handling.

Layout of a run directory (``<run.storage_path>/<run.name>/``, shared storage on clusters):

    config.yaml          resolved config, secrets redacted
    base_model/          the tiny model, when model.path is ``tiny``
    data/                validated canonical JSONL the workers read
    sft/ grpo/           Ray Train run folders: checkpoint-000050/ ... (resume source)
    models/<stage>/      final weights (full, adapter, merged) + MODEL pointer
    tensorboard/<stage>/ event files (rank 0)
    stages/<stage>.json  what the stage did (steps, resume point, loss history)
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlm_train.cluster.pools import Placement, load_pool, placement_for
from vlm_train.config import JobConfig, dump_config
from vlm_train.launch.placement_wait import wait_for_placement

log = logging.getLogger("vlm_train")

# Environment every worker gets. DeepSpeed's JIT-built ops are cached across runs.
WORKER_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions")),
    "PYTHONUNBUFFERED": "1",
}


def placement(cfg: JobConfig) -> Placement:
    pool = load_pool(cfg.cluster.pool, cfg.cluster.pools_dir)
    return placement_for(pool, cfg.cluster.nodes, cfg.cluster.workers_per_node)


def describe(cfg: JobConfig) -> dict[str, Any]:
    """What the job would ask of Ray: printed by --dry-run."""
    p = placement(cfg)
    micro = int(cfg.sft.get("per_device_train_batch_size", 2))
    accum = int(cfg.sft.get("gradient_accumulation_steps", 1))
    return {
        **p.describe(),
        "per_device_batch_size": micro,
        "gradient_accumulation_steps": accum,
        "global_batch_size": micro * accum * p.num_workers,
        "run_dir": str(cfg.run_dir),
    }


def connect_ray(cfg: JobConfig, p: Placement) -> None:
    """Connect to the configured / submitting cluster, or start Ray in-process."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": dict(WORKER_ENV)}
    if cfg.cluster.address:
        ray.init(address=cfg.cluster.address, runtime_env=env, log_to_driver=True)
    elif os.environ.get("RAY_ADDRESS"):
        # Inside `ray job submit`: the job's own runtime_env (working_dir, env_vars) applies;
        # worker env vars come through the trainer's worker_runtime_env.
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        # The embedded default: a local Ray with this pool's CPUs. The dashboard (bound to
        # loopback) serves the State API that Ray Train's placement-group cleaner polls.
        ray.init(num_cpus=p.pool.cpus_per_node, include_dashboard=True, dashboard_host="127.0.0.1",
                 runtime_env=env, log_to_driver=True)


def materialise_model(cfg: JobConfig, family: Any) -> JobConfig:
    """``model.path: tiny`` -> build the family's tiny checkpoint in the run dir (once)."""
    if cfg.model.path != "tiny":
        return cfg
    out = cfg.run_dir / "base_model"
    if not (out / "config.json").is_file():
        t = cfg.model.tiny
        family.tiny(out, seed=t.seed, image_size=t.image_size, vision_hidden=t.vision_hidden, text_hidden=t.text_hidden, layers=t.layers)
    return replace(cfg, model=replace(cfg.model, path=str(out)))


def run_stage(cfg: JobConfig, stage: str, loop, extra: dict[str, Any] | None = None):
    """Run one training stage on Ray Train; returns ray.train.Result (raises on failure)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    p = placement(cfg)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg))
    connect_ray(cfg, p)
    wait_for_placement(p, cfg.cluster.placement_timeout_s)
    trainer = TorchTrainer(
        loop,
        train_loop_config={"job": cfg.to_dict(), **(extra or {})},
        torch_config=TorchConfig(backend="nccl" if p.use_gpu else "gloo"),
        scaling_config=ScalingConfig(**p.scaling_config_kwargs()),
        run_config=RunConfig(
            name=stage,
            storage_path=str(cfg.run_dir),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.checkpoints_to_keep),
            worker_runtime_env={"env_vars": dict(WORKER_ENV)},
        ),
    )
    log.info("stage %s: %d workers on pool %s", stage, p.num_workers, p.pool.name)
    return trainer.fit()


def train_fn(stage: str):
    """The Ray Train per-worker loop of a stage."""
    if stage == "sft":
        from vlm_train.train.sft import train_loop
    else:
        from vlm_train.train.grpo import train_loop
    return train_loop


def run_single_stage(cfg: JobConfig, stage: str) -> int:
    """What jobs.sft / jobs.grpo do: build the tiny model if asked, prepare data, train, report.

    Returns the job's exit code: 0 done, 1 failed, 3 stopped before the end.
    """
    import json
    import sys

    from vlm_train.data.prepare import prepare_data
    from vlm_train.models import get_family

    family = get_family(cfg.model.family)
    cfg = materialise_model(cfg, family)
    data = prepare_data(cfg, family)
    try:
        run_stage(cfg, stage, train_fn(stage), extra={"data": data.to_json()})
    except Exception as e:  # Ray wraps worker errors; the cause is in the worker log above
        print(f"error: {stage} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    status = json.loads((cfg.run_dir / "stages" / f"{stage}.json").read_text())
    print(f"{stage}: steps {status['start_step']} -> {status['global_step']} of {status['max_steps']}, run dir {cfg.run_dir}")
    return 0 if status["complete"] else 3
