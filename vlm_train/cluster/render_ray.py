"""Ray cluster-launcher YAML (``ray up``) from node-pool specs.

Pools say what hardware a node has; a launcher profile (cluster/launcher/*.yaml) says how
to get such a node from one provider (instance types, images, SSH user). One node type per
GPU pool; a CPU-only head that runs no training (``CPU: 0``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vlm_train.cluster.node_resources import node_labels, node_resources
from vlm_train.cluster.pools import PoolSpec
from vlm_train.cluster.render_common import JobSpec, gpu_pools
from vlm_train.config_base import ConfigError

HEAD_TYPE = "head"
GCS_PORT = 6379


def load_profile(path: str | Path) -> dict[str, Any]:
    """A launcher profile: ``provider``, ``head_node_config``, ``pool_node_configs`` and optional
    ``auth``, ``docker``, ``setup_commands``, ``file_mounts``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("--launcher", f"launcher profile not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    for key in ("provider", "head_node_config", "pool_node_configs"):
        if not isinstance(data.get(key), dict):
            raise ConfigError(key, "missing or not a mapping", p)
    known = {"provider", "head_node_config", "pool_node_configs", "auth", "docker", "setup_commands", "file_mounts"}
    extra = sorted(set(data) - known)
    if extra:
        raise ConfigError(extra[0], f"unknown key (known: {', '.join(sorted(known))})", p)
    return data


def node_type(pool: PoolSpec, node_config: dict[str, Any]) -> dict[str, Any]:
    """The ``available_node_types`` entry of one GPU pool."""
    resources: dict[str, int] = {"CPU": pool.cpus_per_node, "GPU": pool.gpus_per_node}
    # The autoscaler only knows what a node type offers from this table: list every resource
    # a job may ask for (pool resource and accelerator type), not just CPU/GPU.
    resources.update({k: int(v) for k, v in node_resources(pool).items()})
    resources[f"accelerator_type:{pool.accelerator}"] = 1
    entry: dict[str, Any] = {
        "node_config": dict(node_config),
        "min_workers": 0,
        "max_workers": pool.max_nodes,
        "resources": resources,
    }
    labels = node_labels(pool)
    if labels:
        entry["labels"] = labels
    return entry


def render_ray_cluster(pools: list[PoolSpec], profile: dict[str, Any], name: str, job: JobSpec | None = None) -> dict[str, Any]:
    """Render a cluster-launcher config.

    Args:
        pools: Pool specs; each GPU pool becomes a worker node type named after it.
        profile: Launcher profile (see :func:`load_profile`).
        name: ``cluster_name``.
        job: When given, its pool starts with ``job.nodes`` nodes (``min_workers``).

    Returns:
        The config as a dict (dump it with ``yaml.safe_dump``).
    """
    gpu = gpu_pools(pools)
    node_types: dict[str, Any] = {
        HEAD_TYPE: {"node_config": dict(profile["head_node_config"]), "min_workers": 0, "max_workers": 0, "resources": {"CPU": 0}},
    }
    configs = profile["pool_node_configs"]
    for pool in gpu:
        if not isinstance(configs.get(pool.name), dict):
            raise ConfigError(f"pool_node_configs.{pool.name}", "the launcher profile has no node_config for this pool")
        node_types[pool.name] = node_type(pool, configs[pool.name])
        if job is not None and job.pool == pool.name:
            node_types[pool.name]["min_workers"] = job.nodes
    env = "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=~/.ray/auth_token;"
    cfg: dict[str, Any] = {
        "cluster_name": name,
        "max_workers": sum(p.max_nodes for p in gpu),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 10,
        "provider": dict(profile["provider"]),
        "auth": dict(profile.get("auth") or {"ssh_user": "ubuntu"}),
        "available_node_types": node_types,
        "head_node_type": HEAD_TYPE,
        # Token auth: the same token file on every node (copied from where `ray up` runs;
        # create it once with `ray get-auth-token --generate`).
        "file_mounts": {"~/.ray/auth_token": "~/.ray/auth_token", **(profile.get("file_mounts") or {})},
        "setup_commands": list(profile.get("setup_commands") or []),
        "head_start_ray_commands": [
            "ray stop",
            # The job API binds to loopback: reach it with `ray dashboard CLUSTER.yaml` (SSH tunnel).
            f"{env} ulimit -n 65536; ray start --head --port={GCS_PORT} --dashboard-host=127.0.0.1"
            " --autoscaling-config=~/ray_bootstrap_config.yaml --disable-usage-stats",
        ],
        "worker_start_ray_commands": [
            "ray stop",
            f"{env} ulimit -n 65536; ray start --address=$RAY_HEAD_IP:{GCS_PORT} --disable-usage-stats",
        ],
    }
    if profile.get("docker"):
        cfg["docker"] = dict(profile["docker"])
    return cfg
