"""Does a SLURM allocation hold what the job will ask of each node?  Checked before Ray starts.

Ray Train waits for a worker group's placement until it is satisfied, so an allocation with
too few CPUs or GPUs (sbatch's defaults are 1 CPU and no GPU) would otherwise hang the job
until its time limit.  The wrapper (cluster/slurm/vlm_train.sbatch) runs this check first and
stops with exit 2 and the sbatch option to add.

Sources: SLURM's output environment variables (https://slurm.schedmd.com/sbatch.html,
"OUTPUT ENVIRONMENT VARIABLES"): SLURM_JOB_NUM_NODES, SLURM_JOB_CPUS_PER_NODE (e.g.
``72(x2),36``), SLURM_CPUS_ON_NODE, SLURM_GPUS_ON_NODE, SLURM_MEM_PER_NODE and
SLURM_MEM_PER_CPU (MiB; set only when memory is requested or defaulted).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vlm_train.cluster.pools import Placement


@dataclass(frozen=True)
class Allocation:
    """What SLURM granted, per node (the smallest node where nodes differ)."""

    nodes: int
    cpus: int | None
    cpus_from: str
    gpus: int | None
    gpus_from: str
    mem_mb: int | None
    mem_from: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], dev: Path = Path("/dev")) -> Allocation:
        nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
        cpus, cpus_from = None, ""
        if env.get("SLURM_JOB_CPUS_PER_NODE"):
            cpus, cpus_from = min(_expand_counts(env["SLURM_JOB_CPUS_PER_NODE"])), "SLURM_JOB_CPUS_PER_NODE"
        elif env.get("SLURM_CPUS_ON_NODE"):
            cpus, cpus_from = int(env["SLURM_CPUS_ON_NODE"]), "SLURM_CPUS_ON_NODE"
        gpus, gpus_from = visible_gpus(env, dev)
        mem, mem_from = None, ""
        # --mem=0 asks for all of each node's memory: nothing to compare.
        if env.get("SLURM_MEM_PER_NODE") and env["SLURM_MEM_PER_NODE"] != "0":
            mem, mem_from = int(env["SLURM_MEM_PER_NODE"]), "SLURM_MEM_PER_NODE"
        elif env.get("SLURM_MEM_PER_CPU") and env["SLURM_MEM_PER_CPU"] != "0" and cpus is not None:
            mem, mem_from = int(env["SLURM_MEM_PER_CPU"]) * cpus, "SLURM_MEM_PER_CPU x CPUs"
        return cls(nodes, cpus, cpus_from, gpus, gpus_from, mem, mem_from)


def _expand_counts(spec: str) -> list[int]:
    """``72(x2),36`` -> [72, 72, 36] (SLURM's compressed per-node list)."""
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise ValueError(f"cannot read SLURM_JOB_CPUS_PER_NODE={spec!r}")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def visible_gpus(env: Mapping[str, str], dev: Path = Path("/dev")) -> tuple[int, str]:
    """GPUs the node's Ray runtime will get: SLURM's grant (cluster/slurm/ray_node.sh passes it
    as --num-gpus), else CUDA_VISIBLE_DEVICES, else the NVIDIA device files Ray would detect."""
    if env.get("SLURM_GPUS_ON_NODE"):
        return int(env["SLURM_GPUS_ON_NODE"]), "SLURM_GPUS_ON_NODE"
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [x for x in env["CUDA_VISIBLE_DEVICES"].split(",") if x.strip() and x.strip() != "NoDevFiles"]
        return len(ids), "CUDA_VISIBLE_DEVICES"
    found = [p for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    return len(found), f"{dev}/nvidia<N> (no GPU granted by SLURM)"


def misfits(alloc: Allocation, placement: Placement, config_nodes: int) -> list[str]:
    """Why ``placement`` cannot run on ``alloc``; each reason names the sbatch option to add.

    Args:
        alloc: What SLURM granted.
        placement: What the job asks of Ray (workers per node and their resources).
        config_nodes: ``cluster.nodes`` of the job's config (fewer allocated nodes is an error;
            more is allowed: the allocation decides).
    """
    pool = placement.pool
    wpn = placement.workers_per_node
    problems = []
    if alloc.nodes < config_nodes:
        problems.append(f"the config asks for {config_nodes} node(s) (cluster.nodes) but the allocation has "
                        f"{alloc.nodes} (SLURM_JOB_NUM_NODES): add --nodes={config_nodes}")
    need_cpus = wpn * pool.cpus_per_worker
    if alloc.cpus is not None and alloc.cpus < need_cpus:
        problems.append(f"each node runs {wpn} worker(s) x {pool.cpus_per_worker} CPU of pool {pool.name!r} = {need_cpus} CPUs "
                        f"but the allocation has {alloc.cpus} per node ({alloc.cpus_from}): "
                        f"add --cpus-per-task={pool.cpus_per_node} (at least {need_cpus})")
    if placement.use_gpu and (alloc.gpus or 0) < wpn:
        problems.append(f"each node runs {wpn} GPU worker(s) of pool {pool.name!r} but has {alloc.gpus} GPU(s) "
                        f"({alloc.gpus_from}): add --gpus-per-node={pool.gpus_per_node}"
                        + (f" (or --gres={pool.slurm.gres})" if pool.slurm.gres else ""))
    need_mb = int(pool.memory_gb_per_node * 1024)
    if alloc.mem_mb is not None and alloc.mem_mb < need_mb:
        problems.append(f"pool {pool.name!r} nodes are sized for {pool.memory_gb_per_node:g} GB (memory_gb_per_node) "
                        f"but the allocation has {alloc.mem_mb} MB per node ({alloc.mem_from}): "
                        f"add --mem={need_mb}M (or --mem=0 for all of each node's memory)")
    return problems
