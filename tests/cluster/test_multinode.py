"""Multi-node Ray: two Ray nodes on this host advertising a pool's resource; the tiny SFT
job, submitted through the job API, places one training worker on each node and completes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.helpers import REPO
from tests.cluster.local_ray import LocalMultiNode

pytestmark = pytest.mark.slow

POOL = {
    "name": "two-node-cpu",
    "gpus_per_node": 0,
    "cpus_per_node": 1,
    "memory_gb_per_node": 4,
    "workers_per_node": 1,
    "cpus_per_worker": 1,
    "max_nodes": 2,
    "ray_resource": "pool-two-node-cpu",
    "labels": {"vlm-train/pool": "two-node-cpu"},
}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    from vlm_train.cluster.node_resources import ray_start_args
    from vlm_train.cluster.pools import load_pool

    pools = tmp_path_factory.mktemp("pools")
    (pools / "two-node-cpu.yaml").write_text(yaml.safe_dump(POOL))
    pool_args = ray_start_args(load_pool("two-node-cpu", pools))
    cluster = LocalMultiNode(Path(f"/tmp/vt_mn_{os.getpid()}"))
    try:
        cluster.add_node(1, pool_args)
        cluster.add_node(1, pool_args)
        r = cluster.helper("wait", "--dashboard", cluster.dashboard, "--nodes", "2", "--timeout", "180",
                           *[f"--pid={p.pid}" for p in cluster.procs], timeout=240)
        assert r.returncode == 0, r.stderr + "".join(p.read_text() for p in cluster.root.glob("node*.log"))
        yield cluster, pools
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def test_sft_workers_land_on_both_nodes(two_nodes, tmp_path):
    cluster, pools = two_nodes
    storage = tmp_path / "runs"
    r = cluster.helper(
        "submit", "--dashboard", cluster.dashboard, "--submission-id", "vt-multinode", "--working-dir", str(REPO), "--",
        sys.executable, "-m", "jobs.sft", "configs/debug/internvl_tiny_sft.yaml", f"cluster.pools_dir={pools}",
        "cluster.pool=two-node-cpu", "cluster.nodes=2", "sft.max_steps=2", "sft.save_steps=2",
        f"run.storage_path={storage}", "run.name=mn",
        cwd=REPO,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert (storage / "mn" / "sft" / "checkpoint-000002" / "trainer_state.json").is_file()
    # Where did the training workers run? Ask the cluster's state API.
    q = cluster.python(
        "import json; from ray.util.state import list_actors, list_nodes\n"
        f"d = '{cluster.dashboard}'\n"
        "acts = list_actors(address=d, filters=[('class_name', '=', 'RayTrainWorker')], detail=True, raise_on_missing_output=False)\n"
        "nodes = list_nodes(address=d, raise_on_missing_output=False)\n"
        "print(json.dumps({'workers': [a.node_id for a in acts],"
        " 'nodes': {n.node_id: n.resources_total for n in nodes}}))"
    )
    assert q.returncode == 0, q.stderr
    seen = json.loads(q.stdout.strip().splitlines()[-1])
    assert len(seen["workers"]) == 2
    assert len(set(seen["workers"])) == 2, "both workers on one node: the pool resource did not spread them"
    for node_id in seen["workers"]:
        assert seen["nodes"][node_id]["pool-two-node-cpu"] == 1.0


def test_submit_returns_the_driver_exit_code(two_nodes):
    cluster, _ = two_nodes
    r = cluster.helper(
        "submit", "--dashboard", cluster.dashboard, "--submission-id", "vt-exit-3", "--working-dir", str(REPO), "--",
        sys.executable, "-c", "import sys; print('stopping early'); sys.exit(3)",
        cwd=REPO, timeout=300,
    )
    assert r.returncode == 3, (r.stdout + r.stderr)[-3000:]
    assert "stopping early" in r.stdout
