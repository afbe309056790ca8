"""The wrapper's allocation check: SLURM's environment against what the job asks of each node."""

from __future__ import annotations

from tests.cluster.helpers import POOLS_DIR
from vlm_train.cluster.allocation import Allocation, misfits
from vlm_train.cluster.pools import load_pool, placement_for


def fits(env: dict[str, str], pool: str, nodes: int = 1, config_nodes: int = 1, dev=None) -> list[str]:
    alloc = Allocation.from_env(env, dev) if dev else Allocation.from_env(env)
    return misfits(alloc, placement_for(load_pool(pool, POOLS_DIR), nodes), config_nodes)


def test_reads_slurm_per_node_counts(tmp_path):
    a = Allocation.from_env({"SLURM_JOB_NUM_NODES": "3", "SLURM_JOB_CPUS_PER_NODE": "72(x2),36", "SLURM_CPUS_ON_NODE": "72",
                             "SLURM_GPUS_ON_NODE": "8", "SLURM_MEM_PER_CPU": "1000"}, tmp_path)
    assert (a.nodes, a.cpus, a.gpus, a.mem_mb) == (3, 36, 8, 36000)  # the smallest node decides
    b = Allocation.from_env({"SLURM_CPUS_ON_NODE": "4", "CUDA_VISIBLE_DEVICES": "0,1"}, tmp_path)
    assert (b.nodes, b.cpus, b.gpus, b.mem_mb) == (1, 4, 2, None)
    (tmp_path / "nvidia0").touch(), (tmp_path / "nvidia1").touch(), (tmp_path / "nvidiactl").touch()
    assert Allocation.from_env({}, tmp_path).gpus == 2  # no grant: what Ray would detect


def test_sbatch_defaults_do_not_hold_the_tiny_job():
    # sbatch without options: 1 CPU; local-cpu runs 2 workers x 1 CPU.
    (why,) = fits({"SLURM_JOB_NUM_NODES": "1", "SLURM_CPUS_ON_NODE": "1", "SLURM_JOB_CPUS_PER_NODE": "1"}, "local-cpu")
    assert "2 CPUs" in why and "has 1 per node" in why and "--cpus-per-task=2" in why
    assert fits({"SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_CPUS_PER_NODE": "2"}, "local-cpu") == []


def test_gpu_pool_without_gpus_names_gpus_per_node(tmp_path):
    env = {"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_CPUS_PER_NODE": "192(x2)", "SLURM_MEM_PER_NODE": str(1800 * 1024)}
    (why,) = fits(env, "h100-80gb", nodes=2, config_nodes=2, dev=tmp_path)
    assert "8 GPU worker(s)" in why and "--gpus-per-node=8" in why and "--gres=gpu:h100:8" in why
    assert fits({**env, "SLURM_GPUS_ON_NODE": "8"}, "h100-80gb", nodes=2, config_nodes=2) == []


def test_memory_and_node_count():
    pool = load_pool("local-cpu", POOLS_DIR)
    env = {"SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_CPUS_PER_NODE": "2", "SLURM_MEM_PER_NODE": "1000"}
    problems = fits(env, "local-cpu", nodes=1, config_nodes=2)
    assert len(problems) == 2
    assert "cluster.nodes" in problems[0] and "--nodes=2" in problems[0]
    assert f"--mem={int(pool.memory_gb_per_node * 1024)}M" in problems[1] and "1000 MB" in problems[1]
    # More nodes than the config asks is fine: the allocation decides.
    assert fits({**env, "SLURM_JOB_NUM_NODES": "2", "SLURM_MEM_PER_NODE": "16384"}, "local-cpu", nodes=2) == []
    assert fits({**env, "SLURM_MEM_PER_NODE": "0"}, "local-cpu") == []  # --mem=0: the whole node
