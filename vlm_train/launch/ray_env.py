"""The driver's Ray connection and the environment every training worker gets."""

from __future__ import annotations

import os
from pathlib import Path

from vlm_train.cluster.pools import Placement
from vlm_train.config import JobConfig
from vlm_train.launch.console import LEVEL_ENV, ray_init_kwargs, verbose

FAULTS_ENV = "VLM_TRAIN_TEST_FAULTS"  # the test hook of vlm_train/train/fault_hook.py

# Environment every worker gets. DeepSpeed's JIT-built ops are cached across runs.
WORKER_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions")),
    "PYTHONUNBUFFERED": "1",
}


def worker_env(p: Placement) -> dict[str, str]:
    """WORKER_ENV plus the console settings: the log level, and on CPU pools DeepSpeed's
    accelerator named up front (else every process probes for one and warns that it found none)."""
    env = dict(WORKER_ENV)
    if not p.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    # The test hook (vlm_train/train/fault_hook.py), off unless set. Always named: a value an
    # earlier ray.init put into the job's environment must not reach a later run's workers.
    env[FAULTS_ENV] = os.environ.get(FAULTS_ENV, "")
    if verbose():
        env[LEVEL_ENV] = "debug"
    else:
        env["TQDM_DISABLE"] = "1"  # the driver prints progress; bars would only fill the worker logs
    return env


def connect_ray(cfg: JobConfig, p: Placement) -> None:
    """Connect to the configured / submitting cluster, or start Ray in-process."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": worker_env(p)}
    quiet = ray_init_kwargs()
    if cfg.cluster.address:
        ray.init(address=cfg.cluster.address, runtime_env=env, **quiet)
    elif os.environ.get("RAY_ADDRESS"):
        # Inside `ray job submit`: the job's own runtime_env (working_dir, env_vars) applies;
        # worker env vars come through the trainer's worker_runtime_env.
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet)
    else:
        # The embedded default: a local Ray with this pool's CPUs. The dashboard (bound to
        # loopback) serves the State API that Ray Train's placement-group cleaner polls.
        ray.init(num_cpus=p.pool.cpus_per_node, include_dashboard=True, dashboard_host="127.0.0.1",
                 runtime_env=env, **quiet)
