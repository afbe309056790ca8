"""sbatch directives for a job on a node pool.

The wrapper (cluster/slurm/vlm_train.sbatch) starts one Ray runtime per node, so a job asks
SLURM for whole pool nodes: one task per node holding all of the node's CPUs, GPUs and memory.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from vlm_train.cluster.pools import PoolSpec, placement_for

WRAPPER = Path("cluster/slurm/vlm_train.sbatch")


@dataclass
class SlurmRequest:
    pool: PoolSpec
    nodes: int
    job_name: str
    output: str
    """Path pattern of the batch log (``%j`` is the job id)."""
    exclusive: bool = False
    time: str | None = None
    """Overrides the pool's ``slurm.time``."""
    extra: list[str] = field(default_factory=list)
    """More sbatch options, passed through verbatim."""

    def directives(self) -> list[str]:
        """sbatch options as ``--key=value`` strings (also usable as ``#SBATCH`` lines).

        Raises:
            ConfigError: the pool cannot hold ``nodes`` nodes.
        """
        placement_for(self.pool, self.nodes)  # more nodes than the pool has -> one clear error
        s = self.pool.slurm
        d = [
            f"--job-name={self.job_name}",
            f"--nodes={self.nodes}",
            "--ntasks-per-node=1",
            f"--cpus-per-task={self.pool.cpus_per_node}",
            f"--mem={int(self.pool.memory_gb_per_node * 1024)}M",
            f"--time={self.time or s.time}",
            f"--output={self.output}",
        ]
        if self.pool.is_gpu:
            # A site's gres string (gpu:h100:8) pins the GPU type; otherwise ask for a count.
            d.append(f"--gres={s.gres}" if s.gres else f"--gpus-per-node={self.pool.gpus_per_node}")
        for key, value in (("partition", s.partition), ("account", s.account), ("qos", s.qos), ("constraint", s.constraint)):
            if value:
                d.append(f"--{key}={value}")
        if self.exclusive:
            d.append("--exclusive")
        return d + list(self.extra)

    def script_header(self) -> str:
        return "\n".join(f"#SBATCH {x}" for x in self.directives())


def sbatch_command(req: SlurmRequest, config: str, overrides: list[str], job_module: str, wrapper: Path = WRAPPER) -> list[str]:
    """The full ``sbatch`` command line: directives, the job module, the wrapper and its arguments."""
    export = "ALL" if job_module == "jobs.sft" else f"ALL,VLM_TRAIN_JOB={job_module}"
    return ["sbatch", "--parsable", f"--export={export}", *req.directives(), str(wrapper), config, *overrides]


def shell_line(argv: list[str]) -> str:
    return shlex.join(argv)
