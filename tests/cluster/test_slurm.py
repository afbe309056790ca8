"""The SLURM wrapper on a real SLURM: Ray brought up inside an allocation, a job run through
the job API, its status propagated, and nothing of Ray left after the job ends or is cancelled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "cluster" / "slurm" / "vlm_train.sbatch"


def job_env(**extra: str) -> dict[str, str]:
    return {
        "VLM_TRAIN_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        # Keep Ray small on shared CI machines.
        "VLM_TRAIN_OBJECT_STORE_BYTES": str(200 * 1024 * 1024),
        # The wrapper's default; the session conftest turns auth off for its own Ray.
        "RAY_AUTH_MODE": "token",
        **extra,
    }


def tagged_processes(job_id: int) -> list[tuple[int, str]]:
    """Live processes started for SLURM job ``job_id`` (by their environment), with their command."""
    found = []
    needles = (f"SLURM_JOB_ID={job_id}".encode(), f"VT_RAY_JOB={job_id}".encode())
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue
        if any(n in env for n in needles):
            found.append((int(d.name), cmd[:200]))
    return found


def wait_no_processes(job_id: int, timeout: float = 60.0) -> list[tuple[int, str]]:
    end = time.monotonic() + timeout
    left = tagged_processes(job_id)
    while left and time.monotonic() < end:
        time.sleep(1.0)
        left = tagged_processes(job_id)
    return left


def probe_config(tmp_path: Path, name: str) -> Path:
    cfg = {"run": {"name": name, "storage_path": str(tmp_path / "runs")}, "deepspeed": {"config": None}}
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_trivial_batch_job_runs(local_slurm, tmp_path):
    out = tmp_path / "out.txt"
    job = local_slurm.sbatch(["--wrap", "echo on $(hostname -s) in $SLURM_JOB_ID", f"--output={out}"])
    assert local_slurm.wait(job, 60) == "COMPLETED"
    assert f"in {job}" in out.read_text()


def test_slurm_submit_cli_runs_probe_job_through_ray_job_api(local_slurm, tmp_path):
    """`vlm-train slurm submit` -> real sbatch with the pool's directives -> wrapper -> Ray -> job."""
    cfg = probe_config(tmp_path, "probe")
    r = subprocess.run(
        [sys.executable, "-m", "vlm_train.cli", "slurm", "submit", str(cfg), "--pool", "local-cpu", "--nodes", "1",
         "--job", "vlm_train.cluster.probe_job"],
        cwd=REPO, env={**local_slurm.env, **job_env()}, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    job = int(re.search(r"submitted job (\d+)", r.stdout).group(1))
    info = local_slurm.job_info(job)
    # Directives from the local-cpu pool spec: 2 CPUs per node, 16 GB, 24 h.
    assert (info["NumCPUs"], info["NumNodes"].split("-")[0], info["JobName"]) == ("2", "1", "vlm_train-probe")
    assert (info["TimeLimit"], info["MinMemoryNode"]) == ("1-00:00:00", "16G")
    state = local_slurm.wait(job, 300)
    run = tmp_path / "runs" / "probe"
    log = (run / f"slurm-{job}.out").read_text()
    assert state == "COMPLETED", log[-4000:]
    report = json.loads((run / "probe.json").read_text())
    # local-cpu: two worker slots on the node, each reserved through the pool's placement.
    assert len(report["workers"]) == 2 and report["nodes_alive"] == 1
    assert report["cluster_resources"]["CPU"] == local_slurm.cpus
    logs = run / f"slurm-{job}"
    assert "probe_job: 2 workers" in (logs / "job.log").read_text()
    assert list(logs.glob("ray-head-*.log")) and list(logs.glob("ray-logs-*/raylet.out"))
    token = logs / ".ray_auth_token"
    assert token.stat().st_mode & 0o077 == 0, "the per-job Ray token must be private"
    # The dashboard / job API listened on the head's address, not on every interface.
    head_log = next(logs.glob("ray-head-*.log")).read_text()
    assert "--dashboard-host=0.0.0.0" not in head_log and "--dashboard-host=" in head_log
    assert wait_no_processes(job) == []


def test_wrapper_propagates_job_exit_status(local_slurm, tmp_path):
    cfg = probe_config(tmp_path, "badpool")
    job = local_slurm.sbatch(
        [f"--output={tmp_path}/slurm-%j.out", f"--cpus-per-task={local_slurm.cpus}", str(WRAPPER), str(cfg), "cluster.pool=nope"],
        cwd=REPO, env=job_env(VLM_TRAIN_JOB="vlm_train.cluster.probe_job"),
    )
    assert local_slurm.wait(job, 120) == "FAILED"
    assert local_slurm.job_info(job)["ExitCode"] == "2:0"
    assert "unknown pool 'nope'" in (tmp_path / f"slurm-{job}.out").read_text()


SFT_CONFIG = "configs/debug/internvl_tiny_sft.yaml"


def sbatch_sft(local_slurm, tmp_path: Path, name: str, *overrides: str) -> int:
    return local_slurm.sbatch(
        [f"--output={tmp_path}/slurm-%j.out", "--nodes=1", f"--cpus-per-task={local_slurm.cpus}", f"--job-name={name}",
         str(WRAPPER), SFT_CONFIG, f"run.storage_path={tmp_path / 'runs'}", f"run.name={name}", *overrides],
        cwd=REPO, env=job_env(),
    )


def test_documented_sbatch_without_cpus_fails_at_once_naming_the_option(local_slurm, checkout):
    """`sbatch cluster/slurm/vlm_train.sbatch CONFIG` with sbatch's default of 1 CPU: the tiny
    job's 2 workers could never be placed; the wrapper says so before starting Ray."""
    t0 = time.monotonic()
    job = local_slurm.sbatch(["cluster/slurm/vlm_train.sbatch", SFT_CONFIG],
                             cwd=checkout, env=job_env(PYTHONPATH=str(checkout)))
    assert local_slurm.wait(job, 60) == "FAILED"
    took = time.monotonic() - t0
    print(f"too few CPUs: FAILED after {took:.1f}s")
    assert local_slurm.job_info(job)["ExitCode"] == "2:0"
    out = (checkout / f"slurm-{job}.out").read_text()
    assert "--cpus-per-task=2" in out and "has 1 per node" in out, out
    assert "Ray nodes alive" not in out and not (checkout / "runs" / "internvl_tiny_sft" / f"slurm-{job}").exists()
    assert wait_no_processes(job, 10) == []


def test_documented_sbatch_completes_with_outputs_where_the_docs_say(local_slurm, checkout):
    """The README's direct sbatch, from the checkout's root, default --output and storage: the
    batch log grows in the submit dir while Ray packages it, and must not break the package."""
    t0 = time.monotonic()
    job = local_slurm.sbatch(
        ["--cpus-per-task=2", "cluster/slurm/vlm_train.sbatch", SFT_CONFIG, "sft.max_steps=4", "sft.save_steps=4"],
        cwd=checkout, env=job_env(PYTHONPATH=str(checkout)),
    )
    state = local_slurm.wait(job, 900)
    out = (checkout / f"slurm-{job}.out").read_text()
    assert state == "COMPLETED", out[-6000:]
    print(f"SLURM tiny SFT wall time: {time.monotonic() - t0:.0f}s")
    run = checkout / "runs" / "internvl_tiny_sft"
    assert (run / "sft" / "checkpoint-000004" / "trainer_state.json").is_file()
    assert (run / "models" / "sft" / "MODEL").is_file() and list((run / "tensorboard" / "sft").glob("events.out.tfevents.*"))
    assert local_slurm.job_info(job)["ExitCode"] == "0:0"
    # The stage's end line names where it wrote: the user's runs/, not Ray's copy of the checkout.
    assert f"steps 0 -> 4, checkpoints in {run}/sft" in (run / f"slurm-{job}" / "job.log").read_text()
    assert f"checkpoints in {run}/sft, model {run}/models/sft/" in out
    assert wait_no_processes(job) == []
    assert not Path(f"/tmp/vt_{job}").exists()


def test_job_exit_status_comes_back_through_ray_and_slurm(local_slurm, tmp_path):
    # A TRL key typo passes the wrapper's quick config read but fails in jobs.sft (status 2),
    # after Ray is up: the status travels driver -> job API -> wrapper -> SLURM.
    job = sbatch_sft(local_slurm, tmp_path, "slurm_typo", "sft.max_step=3")
    assert local_slurm.wait(job, 300) == "FAILED"
    assert local_slurm.job_info(job)["ExitCode"] == "2:0"
    out = (tmp_path / f"slurm-{job}.out").read_text()
    assert "1/1 Ray nodes alive" in out and "sft.max_step" in out
    assert wait_no_processes(job) == []


def test_scancel_mid_run_leaves_no_ray_process(local_slurm, tmp_path):
    job = sbatch_sft(local_slurm, tmp_path, "slurm_cancel", "sft.max_steps=400", "sft.save_steps=2")
    first_ckpt = tmp_path / "runs" / "slurm_cancel" / "sft" / "checkpoint-000002"
    end = time.monotonic() + 600
    while not first_ckpt.exists():  # training is under way once a checkpoint lands
        assert time.monotonic() < end, (tmp_path / f"slurm-{job}.out").read_text()[-4000:]
        assert local_slurm.state(job) in ("PENDING", "RUNNING", "CONFIGURING"), (tmp_path / f"slurm-{job}.out").read_text()[-4000:]
        time.sleep(1.0)
    running = tagged_processes(job)
    assert any("raylet" in cmd for _, cmd in running), "Ray should be running before the cancel"
    assert any("RayTrainWorker" in cmd or "ray::" in cmd for _, cmd in running)
    local_slurm.run(["scancel", str(job)])
    assert local_slurm.wait(job, 120) == "CANCELLED"
    left = wait_no_processes(job, 60)
    assert left == [], f"left behind: {left}"
    assert not Path(f"/tmp/vt_{job}").exists()
    assert not (tmp_path / "runs" / "slurm_cancel" / "sft" / "checkpoint-000400").exists()
