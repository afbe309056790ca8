"""Node-pool specs: one YAML per GPU node pool (cluster/pools/*.yaml) -> Ray resources.

A pool is one hardware type. A job names a pool and a node count; everything Ray Train
needs (workers, resources per worker, accelerator type, placement) is derived here, so
jobs never hard-code cluster shapes.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vlm_train.config_base import ConfigError, from_dict

# Accelerator names Ray knows as `accelerator_type:<X>` resources (ray.util.accelerators).
KNOWN_ACCELERATORS = {
    "H100", "H200", "B200", "GB200", "A100", "A100-40G", "A100-80G", "A10G", "L4", "L40S",
    "V100", "T4", "A40", "A6000", "RTX", "MI300X", "MI250X",
}


@dataclass
class SlurmSpec:
    partition: str | None = None
    gres: str | None = None
    time: str = "24:00:00"
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None


@dataclass
class KubernetesSpec:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    image: str = "rayproject/ray:2.60.0-py311-gpu"


@dataclass
class PoolSpec:
    name: str
    gpus_per_node: int
    cpus_per_node: int
    memory_gb_per_node: float
    max_nodes: int
    accelerator: str | None = None
    gpu_memory_gb: float | None = None
    workers_per_node: int | None = None
    """CPU pools only: how many training workers a node runs (GPU pools: one per GPU)."""
    cpus_per_worker: int = 1
    ray_resource: str | None = None
    """Custom resource each node of the pool advertises (one unit per GPU / worker slot)."""
    labels: dict[str, str] = field(default_factory=dict)
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    kubernetes: KubernetesSpec = field(default_factory=KubernetesSpec)

    def validate(self, prefix: str) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{prefix}.{key}" if prefix else key, why)

        from vlm_train.names import label_key_problem, label_value_problem

        # The name becomes a worker-group name and a pod label value; labels go to `ray start
        # --labels=k=v,...` and the manifests: a comma, '=' or newline in them would inject.
        problem = label_value_problem(self.name) if self.name else "must not be empty"
        if problem:
            raise bad("name", problem)
        for k, v in self.labels.items():
            problem = label_key_problem(str(k)) or label_value_problem(str(v))
            if problem:
                raise bad(f"labels.{k}", problem)
        if self.ray_resource is not None and label_value_problem(self.ray_resource):
            raise bad("ray_resource", label_value_problem(self.ray_resource))
        if self.gpus_per_node < 0:
            raise bad("gpus_per_node", f"must be >= 0, got {self.gpus_per_node}")
        if self.accelerator is not None:
            if self.gpus_per_node == 0:
                raise bad("gpus_per_node", f"a pool with accelerator {self.accelerator} needs gpus_per_node >= 1")
            if self.accelerator not in KNOWN_ACCELERATORS:
                raise bad("accelerator", f"unknown accelerator {self.accelerator!r} (known: {', '.join(sorted(KNOWN_ACCELERATORS))})")
        elif self.gpus_per_node > 0:
            raise bad("accelerator", "a GPU pool must name its accelerator type")
        if self.gpus_per_node == 0 and not self.workers_per_node:
            raise bad("workers_per_node", "a CPU pool (gpus_per_node 0) must set workers_per_node >= 1")
        if self.cpus_per_node < 1:
            raise bad("cpus_per_node", f"must be >= 1, got {self.cpus_per_node}")
        if self.max_nodes < 1:
            raise bad("max_nodes", f"must be >= 1, got {self.max_nodes}")
        if self.cpus_per_worker < 1:
            raise bad("cpus_per_worker", f"must be >= 1, got {self.cpus_per_worker}")
        if self.cpus_per_worker * self.slots_per_node > self.cpus_per_node:
            raise bad("cpus_per_worker", f"{self.cpus_per_worker} CPUs x {self.slots_per_node} workers exceeds cpus_per_node {self.cpus_per_node}")

    @property
    def is_gpu(self) -> bool:
        return self.gpus_per_node > 0

    @property
    def slots_per_node(self) -> int:
        return self.gpus_per_node if self.is_gpu else int(self.workers_per_node or 0)


_REQUIRED = [f.name for f in fields(PoolSpec) if f.default is MISSING and f.default_factory is MISSING]


def load_pool(name: str, pools_dir: str | Path = "cluster/pools") -> PoolSpec:
    """Load pool ``name`` (a file ``<pools_dir>/<name>.yaml``, or a path to a YAML)."""
    p = Path(name) if name.endswith((".yaml", ".yml")) else Path(pools_dir) / f"{name}.yaml"
    if not p.is_file():
        known = sorted(x.stem for x in Path(pools_dir).glob("*.yaml")) if Path(pools_dir).is_dir() else []
        raise ConfigError("cluster.pool", f"unknown pool {name!r}: no file {p} (known: {', '.join(known) or 'none'})")
    try:
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError("<root>", "a pool spec must be a mapping")
        missing = [f.name for f in fields(PoolSpec) if f.default is MISSING and f.default_factory is MISSING and f.name not in data]
        if missing:
            raise ConfigError(missing[0], f"required key missing (required: {', '.join(_REQUIRED)})")
        return from_dict(PoolSpec, data)
    except ConfigError as e:
        raise ConfigError(e.key, e.reason, p) from None
    except yaml.YAMLError as e:
        raise ConfigError("<yaml>", f"invalid YAML: {e}", p) from None


def load_pools(pools_dir: str | Path) -> list[PoolSpec]:
    return [load_pool(str(p)) for p in sorted(Path(pools_dir).glob("*.yaml"))]


@dataclass
class Placement:
    """What a job asks of Ray: derived from a pool and a node count."""

    pool: PoolSpec
    nodes: int
    workers_per_node: int

    @property
    def num_workers(self) -> int:
        return self.nodes * self.workers_per_node

    @property
    def use_gpu(self) -> bool:
        return self.pool.is_gpu

    @property
    def resources_per_worker(self) -> dict[str, float]:
        res: dict[str, float] = {"CPU": float(self.pool.cpus_per_worker)}
        if self.pool.ray_resource:
            res[self.pool.ray_resource] = 1.0
        return res

    def scaling_config_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "num_workers": self.num_workers,
            "use_gpu": self.use_gpu,
            "resources_per_worker": self.resources_per_worker,
            # PACK fills a node's GPUs before the next node: NVLink-local ranks stay together.
            "placement_strategy": "PACK",
        }
        if self.pool.accelerator:
            kw["accelerator_type"] = self.pool.accelerator
        return kw

    def describe(self) -> dict[str, Any]:
        return {
            "pool": self.pool.name,
            "nodes": self.nodes,
            "workers_per_node": self.workers_per_node,
            "world_size": self.num_workers,
            **{k: v for k, v in self.scaling_config_kwargs().items() if k != "num_workers"},
        }


def placement_for(pool: PoolSpec, nodes: int, workers_per_node: int | None = None) -> Placement:
    """Derive a placement; raises ConfigError (naming the cluster.* key) if the pool can't hold it."""
    if nodes > pool.max_nodes:
        raise ConfigError("cluster.nodes", f"asks for {nodes} nodes but pool {pool.name!r} has max_nodes {pool.max_nodes}")
    wpn = workers_per_node or pool.slots_per_node
    if wpn > pool.slots_per_node:
        unit = "GPUs" if pool.is_gpu else "worker slots"
        raise ConfigError("cluster.workers_per_node", f"asks for {wpn} workers per node but pool {pool.name!r} nodes have {pool.slots_per_node} {unit}")
    return Placement(pool, nodes, wpn)
