"""A grounding evaluation of one model, run as a Ray task on a worker of the job's pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.data.prepare import PreparedData
from vlm_train.launch.plan import placement


def evaluate_remote(cfg: JobConfig, data: PreparedData, model_dir: Path, tag: str, step: int) -> dict[str, Any]:
    """Evaluate on one worker of the job's pool (a GPU when the pool has them)."""
    import ray

    from vlm_train.eval.grounding import evaluate_checkpoint

    p = placement(cfg)
    task = ray.remote(num_cpus=p.pool.cpus_per_worker, num_gpus=1 if p.use_gpu else 0)(evaluate_checkpoint)
    # The policy is evaluated as GRPO runs it: with the crop tool live when the job has one.
    tools = vars(cfg.tools) if cfg.tools.crop and cfg.tools.max_calls > 0 else None
    return ray.get(task.remote(
        str(model_dir), cfg.model.family, str(data.eval), data.image_roots,
        str(cfg.run_dir.eval(tag)), str(cfg.run_dir.tensorboard_eval), f"eval/{tag}", step, tools=tools,
    ))
