"""A training worker's place and environment: rank, distributed init, seeding, barrier.

Runs first in every stage's worker loop (docs/design.md, "Load order under ZeRO-3"). On CPU
``deepspeed.comm`` must be initialised before anything builds a ZeRO-3 context, or zero.Init
sees world size 1 and fails its batch-size check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from vlm_train.config import JobConfig
from vlm_train.models.common import has_cuda
from vlm_train.train.worker_logs import redirect_worker_output


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


def init_worker_env(cfg: JobConfig, stage: str) -> WorkerInfo:
    """Distributed and library environment of one training worker of ``stage``."""
    info = worker_info()
    redirect_worker_output(cfg.run_dir.worker_log(stage, info.rank))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers' TensorBoardCallback (rank 0) writes where this points.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(cfg.run_dir.tensorboard(stage))
    if cfg.deepspeed.config is not None:
        import deepspeed

        if not has_cuda():
            skip_cpu_shm_op()
        # Ray already created the torch process group; this makes deepspeed.comm use it.
        deepspeed.init_distributed(dist_backend="nccl" if has_cuda() else "gloo")
    torch.manual_seed(cfg.run.seed + info.rank)
    return info


def skip_cpu_shm_op() -> None:
    """Keep DeepSpeed's CPU backend from JIT-building its shared-memory all-reduce op.

    On the CPU accelerator ``deepspeed.comm`` builds ``deepspeed_shm_comm`` (a C++ extension)
    when it starts; only ``inference_all_reduce`` (DeepSpeed-Inference) uses it: training
    collectives go through torch.distributed (gloo). Built cold it costs 60-180 s of compile on
    2 cores, on the first run and again whenever its build command changes (torch_extensions
    cache). DeepSpeed consults the op table below before building and keeps edits to it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
