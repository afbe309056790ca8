"""What a node of a pool advertises to Ray: custom resources and labels.

The same numbers feed ``ray start`` in the SLURM wrapper, the Ray cluster-launcher YAML and
the KubeRay manifests, so a job's ``resources_per_worker`` (vlm_train.cluster.pools.Placement)
always finds its pool's nodes, whatever launched them.
"""

from __future__ import annotations

import json

from vlm_train.cluster.pools import PoolSpec


def node_resources(pool: PoolSpec) -> dict[str, float]:
    """Custom resources one node of ``pool`` advertises: one ``ray_resource`` unit per worker slot.

    Args:
        pool: The node-pool spec.

    Returns:
        ``{pool.ray_resource: slots_per_node}``, or ``{}`` when the pool names no resource.
    """
    if not pool.ray_resource:
        return {}
    return {pool.ray_resource: float(pool.slots_per_node)}


def node_labels(pool: PoolSpec) -> dict[str, str]:
    """Labels one node of ``pool`` carries (the spec's ``labels``)."""
    return dict(pool.labels)


def ray_start_args(pool: PoolSpec) -> list[str]:
    """``ray start`` options that make a node a member of ``pool`` (resources and labels)."""
    args: list[str] = []
    res = node_resources(pool)
    if res:
        args.append("--resources=" + json.dumps(res, separators=(",", ":")))
    labels = node_labels(pool)
    if labels:
        args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
    return args
