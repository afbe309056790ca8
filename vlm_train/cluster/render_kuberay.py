"""KubeRay RayCluster and RayJob manifests from node-pool specs.

One worker group per GPU pool: its pods ask for the whole node's GPUs (``nvidia.com/gpu``
limits), most of its CPUs and memory, carry the pool's node selector and tolerations, advertise
the pool's Ray resource and labels, and mount one shared volume (checkpoints, TensorBoard,
HF cache) at the same path as the head. Token auth is on (``authOptions.mode: token``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from vlm_train.cluster.node_resources import node_labels, node_resources
from vlm_train.cluster.pools import PoolSpec
from vlm_train.cluster.render_common import RAY_VERSION, JobSpec, gpu_pools
from vlm_train.redact import redact_text

# Kubelet, device plugins and daemon sets need room on each node: request 90% of it.
HEADROOM = 0.9
STORAGE_VOLUME = "storage"


@dataclass
class KubeOptions:
    name: str = "vlm-train"
    namespace: str | None = None
    image: str | None = None
    """Image for every pod; None: each pool's ``kubernetes.image`` (head: the first pool's)."""
    storage_claim: str = "vlm-train-storage"
    """A ReadWriteMany PersistentVolumeClaim (NFS, Lustre, Filestore, EFS ...) mounted on every pod."""
    storage_mount: str = "/mnt/storage"
    auth_secret: str | None = None
    """Secret holding the Ray auth token; None lets KubeRay manage it."""
    head_cpus: int = 8
    head_memory_gi: int = 32


def _volumes(opts: KubeOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [
        {"name": STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": opts.storage_claim}},
        # NCCL and the object store use /dev/shm; the container default (64 MiB) is far too small.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    mounts = [{"name": STORAGE_VOLUME, "mountPath": opts.storage_mount}, {"name": "dshm", "mountPath": "/dev/shm"}]
    return volumes, mounts


def _env(opts: KubeOptions) -> list[dict[str, Any]]:
    # Caches on shared storage: every node reads the same weights once.
    return [{"name": "HF_HOME", "value": f"{opts.storage_mount}/hf"}]


def _head(pools: list[PoolSpec], opts: KubeOptions) -> dict[str, Any]:
    volumes, mounts = _volumes(opts)
    res = {"cpu": str(opts.head_cpus), "memory": f"{opts.head_memory_gi}Gi"}
    return {
        # The head schedules but does not train: no GPU, no CPUs offered to tasks.
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "serviceType": "ClusterIP",
        "template": {"spec": {
            "containers": [{
                "name": "ray-head",
                "image": opts.image or pools[0].kubernetes.image,
                "ports": [
                    {"containerPort": 6379, "name": "gcs-server"},
                    {"containerPort": 8265, "name": "dashboard"},
                    {"containerPort": 10001, "name": "client"},
                ],
                "resources": {"limits": dict(res), "requests": dict(res)},
                "env": _env(opts),
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        }},
    }


def worker_group(pool: PoolSpec, replicas: int, opts: KubeOptions) -> dict[str, Any]:
    """The ``workerGroupSpecs`` entry of one GPU pool."""
    volumes, mounts = _volumes(opts)
    cpus = max(1, math.floor(pool.cpus_per_node * HEADROOM))
    mem_gi = max(1, math.floor(pool.memory_gb_per_node * HEADROOM))
    res = {"cpu": str(cpus), "memory": f"{mem_gi}Gi", "nvidia.com/gpu": str(pool.gpus_per_node)}
    params: dict[str, str] = {}
    custom = node_resources(pool)
    if custom:
        # KubeRay passes rayStartParams through to `ray start`; the JSON must arrive quoted.
        params["resources"] = json.dumps(json.dumps({k: int(v) for k, v in custom.items()}))
    labels = node_labels(pool)
    if labels:
        params["labels"] = ",".join(f"{k}={v}" for k, v in labels.items())
    spec: dict[str, Any] = {
        "containers": [{
            "name": "ray-worker",
            "image": opts.image or pool.kubernetes.image,
            "resources": {"limits": dict(res), "requests": dict(res)},
            "env": _env(opts),
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }
    if pool.kubernetes.node_selector:
        spec["nodeSelector"] = dict(pool.kubernetes.node_selector)
    if pool.kubernetes.tolerations:
        spec["tolerations"] = [dict(t) for t in pool.kubernetes.tolerations]
    return {
        "groupName": pool.name,
        "replicas": replicas,
        "minReplicas": 0,
        "maxReplicas": pool.max_nodes,
        "rayStartParams": params,
        "template": {"metadata": {"labels": {"vlm-train/pool": pool.name}}, "spec": spec},
    }


def raycluster_spec(pools: list[PoolSpec], opts: KubeOptions, job: JobSpec | None = None) -> dict[str, Any]:
    """The ``spec`` of a RayCluster (also a RayJob's ``rayClusterSpec``)."""
    gpu = gpu_pools(pools)
    auth: dict[str, Any] = {"mode": "token"}
    if opts.auth_secret:
        auth["secretName"] = opts.auth_secret
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "authOptions": auth,
        "headGroupSpec": _head(gpu, opts),
        "workerGroupSpecs": [
            worker_group(p, job.nodes if job is not None and job.pool == p.name else 0, opts) for p in gpu
        ],
    }


def _metadata(opts: KubeOptions) -> dict[str, Any]:
    from vlm_train.config_base import ConfigError
    from vlm_train.names import dns_label_problem

    for flag, value in (("--name", opts.name), ("--namespace", opts.namespace)):
        problem = value is not None and dns_label_problem(value)
        if problem:
            raise ConfigError(flag, problem)
    meta: dict[str, Any] = {"name": opts.name, "labels": {"app.kubernetes.io/name": "vlm-train"}}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def render_raycluster(pools: list[PoolSpec], opts: KubeOptions, job: JobSpec | None = None) -> dict[str, Any]:
    """A ``ray.io/v1`` RayCluster manifest."""
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": _metadata(opts), "spec": raycluster_spec(pools, opts, job)}


def render_rayjob(pools: list[PoolSpec], opts: KubeOptions, job: JobSpec) -> dict[str, Any]:
    """A ``ray.io/v1`` RayJob: a cluster sized for ``job``, the job's entrypoint, torn down after."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(opts),
        "spec": {
            "entrypoint": redact_text(job.entrypoint(f"{opts.storage_mount}/runs")),
            # The driver only coordinates: keep it on the head, off the GPU workers.
            "entrypointNumCpus": 0,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            "backoffLimit": 0,
            "rayClusterSpec": raycluster_spec(pools, opts, job),
        },
    }
