"""The Python half of the SLURM wrapper: what it tells the shell about a job."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cluster.helpers import POOLS_DIR, REPO, write_config
from vlm_train.cluster.node_resources import ray_start_args
from vlm_train.cluster.pools import load_pool
from vlm_train.cluster.wrapper_helper import main


def test_ray_start_args_advertise_pool_resources_and_labels():
    args = ray_start_args(load_pool("a100-80gb", POOLS_DIR))
    assert args[0] == '--resources={"pool-a100-80gb":8.0}'
    assert json.loads(args[0].split("=", 1)[1]) == {"pool-a100-80gb": 8}
    assert args[1] == "--labels=vlm-train/pool=a100-80gb"
    assert ray_start_args(load_pool("local-cpu", POOLS_DIR)) == []


def test_info_is_shell_the_wrapper_can_eval(tmp_path):
    cfg = write_config(tmp_path, "r1", cluster={"pool": "h100-80gb", "pools_dir": str(POOLS_DIR), "nodes": 2})
    out = subprocess.run(
        [sys.executable, "-m", "vlm_train.cluster.wrapper_helper", "info", str(cfg), f"run.storage_path={tmp_path}/my runs"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    # Evaluate it in bash exactly as vlm_train.sbatch does, then read the variables back.
    script = out + '\nprintf "%s\\n" "$VT_RUN_DIR" "$VT_POOL" "$VT_WORLD_SIZE" "${VT_RAY_NODE_ARGS[@]}"'
    got = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    # Run names are plain names (tests/test_names.py); a storage path may hold spaces.
    assert got == [str(tmp_path / "my runs" / "r1"), "h100-80gb", "16",
                   '--resources={"pool-h100-80gb":8.0}', "--labels=vlm-train/pool=h100-80gb"]


def test_info_reports_config_errors_with_status_2(tmp_path, capsys):
    cfg = write_config(tmp_path, cluster={"pool": "h100-80gb", "pools_dir": str(POOLS_DIR)})
    assert main(["info", str(cfg), "cluster.nodes=40"]) == 2
    assert "max_nodes 16" in capsys.readouterr().err


def test_submit_needs_an_entrypoint(capsys):
    assert main(["submit", "--dashboard", "http://127.0.0.1:1", "--submission-id", "x", "--"]) == 2
    assert "needs an entrypoint" in capsys.readouterr().err


def test_wait_gives_up_when_a_node_runtime_dies(capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    rc = main(["wait", "--dashboard", "http://127.0.0.1:9", "--nodes", "2", "--timeout", "30", "--pid", str(dead.pid)])
    assert rc == 1
    assert f"[{dead.pid}] exited before all 2 nodes joined" in capsys.readouterr().err


def test_wait_times_out_with_the_count(capsys):
    rc = main(["wait", "--dashboard", "http://127.0.0.1:9", "--nodes", "2", "--timeout", "2"])
    assert rc == 1
    assert "only 0/2 Ray nodes joined within 2s" in capsys.readouterr().err


def test_info_checks_the_allocation_not_the_config_node_count(tmp_path, capsys):
    cfg = write_config(tmp_path, cluster={"pool": "l40s-48gb", "pools_dir": str(POOLS_DIR), "nodes": 2})
    assert main(["info", "--nodes", "1", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "VT_CONFIG_NODES=2" in out and "VT_WORLD_SIZE=4" in out  # 1 node x 4 GPUs
    assert main(["info", "--nodes", "9", str(cfg)]) == 2
    assert "asks for 9 nodes but pool 'l40s-48gb' has max_nodes 8" in capsys.readouterr().err
