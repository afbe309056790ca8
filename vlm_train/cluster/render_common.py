"""Inputs shared by the manifest renderers: the pools to render and the job to run."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from vlm_train.cluster.pools import PoolSpec, load_pool, placement_for
from vlm_train.config_base import ConfigError

RAY_VERSION = "2.60.0"


def load_pool_set(paths: list[str]) -> list[PoolSpec]:
    """Pools from directories (every ``*.yaml``) and/or single YAML files, in a stable order.

    Raises:
        ConfigError: a path is missing, a spec is bad, or two specs share a name.
    """
    pools: list[PoolSpec] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(p.glob("*.yaml"))
            if not files:
                raise ConfigError("--pools", f"no *.yaml pool specs in {p}")
        elif p.is_file():
            files = [p]
        else:
            raise ConfigError("--pools", f"no such file or directory: {p}")
        pools += [load_pool(str(f)) for f in files]
    seen: dict[str, int] = {}
    for pool in pools:
        seen[pool.name] = seen.get(pool.name, 0) + 1
        if seen[pool.name] > 1:
            raise ConfigError("name", f"two pool specs are named {pool.name!r}")
    return pools


def gpu_pools(pools: list[PoolSpec]) -> list[PoolSpec]:
    """The GPU pools (one worker group / node type each); raises if there is none."""
    gpu = [p for p in pools if p.is_gpu]
    if not gpu:
        raise ConfigError("--pools", f"no GPU pool among {', '.join(p.name for p in pools) or 'nothing'}; clusters are rendered for GPU pools")
    return gpu


@dataclass
class JobSpec:
    """The job a RayJob runs (and the node counts a cluster starts with)."""

    config: str
    overrides: list[str] = field(default_factory=list)
    module: str = "jobs.sft"
    pool: str = ""
    nodes: int = 1

    def entrypoint(self, storage_path: str) -> str:
        """Command line of the driver; storage goes to the shared volume."""
        args = ["python", "-m", self.module, self.config, *self.overrides,
                f"cluster.pool={self.pool}", f"cluster.nodes={self.nodes}", f"run.storage_path={storage_path}"]
        return shlex.join(args)


def job_spec(config: str, overrides: list[str], module: str, pools: list[PoolSpec]) -> JobSpec:
    """Read the job's pool and node count from its config and check the pools can hold it."""
    from vlm_train.config import load_config

    cfg = load_config(config, overrides, check_trl=False)
    by_name = {p.name: p for p in pools}
    pool = by_name.get(cfg.cluster.pool)
    if pool is None:
        raise ConfigError("cluster.pool", f"pool {cfg.cluster.pool!r} is not among the rendered pools ({', '.join(by_name)})", config)
    if not pool.is_gpu:
        raise ConfigError("cluster.pool", f"pool {pool.name!r} is a CPU pool; clusters are rendered for GPU pools", config)
    placement_for(pool, cfg.cluster.nodes, cfg.cluster.workers_per_node)
    return JobSpec(config=config, overrides=list(overrides), module=module, pool=pool.name, nodes=cfg.cluster.nodes)
