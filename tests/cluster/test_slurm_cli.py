"""`vlm-train slurm submit`: sbatch directives rendered from the pool spec (dry run)."""

from __future__ import annotations

import shlex

import yaml

from tests.cluster.helpers import POOLS_DIR, write_config
from vlm_train.cluster import slurm_cli


def dry_run(capsys, *args: str) -> tuple[int, list[str], str]:
    rc = slurm_cli.main(["submit", *args, "--dry-run"])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return rc, lines, err


def test_gpu_pool_directives(tmp_path, capsys):
    cfg = write_config(tmp_path, "try1")
    rc, lines, err = dry_run(capsys, str(cfg), "--pool", "h100-80gb", "--nodes", "2", f"cluster.pools_dir={POOLS_DIR}")
    assert rc == 0, err
    header = [x for x in lines if x.startswith("#SBATCH ")]
    assert header == [
        "#SBATCH --job-name=vlm_train-try1",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=192",
        "#SBATCH --mem=1843200M",
        "#SBATCH --time=48:00:00",
        f"#SBATCH --output={tmp_path / 'runs' / 'try1'}/slurm-%j.out",
        "#SBATCH --gres=gpu:h100:8",
        "#SBATCH --partition=h100",
    ]
    cmd = shlex.split(lines[-1])
    assert cmd[:3] == ["sbatch", "--parsable", "--export=ALL"]
    i = cmd.index("cluster/slurm/vlm_train.sbatch")
    # The job's placement follows the allocation: pool and nodes are appended as overrides.
    assert cmd[i + 1 :] == [str(cfg), f"cluster.pools_dir={POOLS_DIR}", "cluster.pool=h100-80gb", "cluster.nodes=2"]


def test_pool_without_gres_asks_gpu_count_and_passes_account_qos(tmp_path, capsys):
    spec = yaml.safe_load((POOLS_DIR / "l40s-48gb.yaml").read_text())
    spec["slurm"] = {"partition": "gpu", "account": "vision", "qos": "high", "constraint": "ib", "time": "02:00:00"}
    pool = tmp_path / "mine.yaml"
    pool.write_text(yaml.safe_dump(spec))
    cfg = write_config(tmp_path)
    rc, lines, err = dry_run(capsys, str(cfg), "--pool", str(pool), "--nodes", "1", "--exclusive", "--job", "jobs.grpo")
    assert rc == 0, err
    for d in ("--gpus-per-node=4", "--account=vision", "--qos=high", "--constraint=ib", "--time=02:00:00",
              "--partition=gpu", "--exclusive", "--cpus-per-task=64"):
        assert f"#SBATCH {d}" in lines
    assert not any("--gres" in x for x in lines)
    cmd = shlex.split(lines[-1])
    assert "--export=ALL,VLM_TRAIN_JOB=jobs.grpo" in cmd
    assert f"cluster.pool={pool}" in cmd


def test_cpu_pool_has_no_gpu_request(tmp_path, capsys):
    cfg = write_config(tmp_path)
    rc, lines, _ = dry_run(capsys, str(cfg), "--pool", "local-cpu", "--nodes", "1", f"cluster.pools_dir={POOLS_DIR}")
    assert rc == 0
    assert not any(x.startswith(("#SBATCH --gres", "#SBATCH --gpus")) for x in lines)
    assert "#SBATCH --cpus-per-task=2" in lines


def test_more_nodes_than_the_pool_has(tmp_path, capsys):
    cfg = write_config(tmp_path)
    rc, lines, err = dry_run(capsys, str(cfg), "--pool", "l40s-48gb", "--nodes", "9", f"cluster.pools_dir={POOLS_DIR}")
    assert rc == 2 and lines == []
    assert "cluster.nodes: asks for 9 nodes but pool 'l40s-48gb' has max_nodes 8" in err


def test_bad_config_fails_before_sbatch(tmp_path, capsys):
    cfg = write_config(tmp_path)
    rc, _, err = dry_run(capsys, str(cfg), "--pool", "l40s-48gb", "--nodes", "1", "sft.max_step=3")
    assert rc == 2
    assert "sft.max_step" in err and str(cfg) in err


def test_unknown_pool(tmp_path, capsys):
    cfg = write_config(tmp_path)
    rc, _, err = dry_run(capsys, str(cfg), "--pool", "tpu", "--nodes", "1", f"--pools-dir={POOLS_DIR}")
    assert rc == 2 and "unknown pool 'tpu'" in err


def test_submit_without_sbatch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = write_config(tmp_path)
    rc = slurm_cli.main(["submit", str(cfg), "--pool", "local-cpu", "--nodes", "1", f"--pools-dir={POOLS_DIR}"])
    assert rc == 2 and "sbatch not found" in capsys.readouterr().err
