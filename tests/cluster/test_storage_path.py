"""A relative run.storage_path is refused inside a Ray job (it would land in Ray's temp copy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from vlm_train.cluster.storage_path import check_storage_path
from vlm_train.config import ConfigError, load_config

PKG = Path("/tmp/ray/session_x/runtime_resources/working_dir_files/_ray_pkg_abc")
JOB_ENV = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}})}


def test_relative_path_in_a_ray_job_is_refused():
    with pytest.raises(ConfigError) as e:
        check_storage_path("runs", JOB_ENV, PKG)
    msg = str(e.value)
    assert e.value.key == "run.storage_path" and "temporary copy" in msg and str(PKG) in msg
    assert "absolute path on storage every node sees" in msg
    # Without a working_dir the driver runs in the job agent's directory: also not the user's.
    with pytest.raises(ConfigError, match="not the submitter's"):
        check_storage_path("runs", {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}, Path("/home/ray"))


def test_absolute_or_outside_a_ray_job_is_fine():
    check_storage_path("/mnt/storage/runs", JOB_ENV, PKG)
    check_storage_path("runs", {}, PKG)


def test_config_loader_refuses_it_naming_the_key(tmp_path, monkeypatch, repo):
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", JOB_ENV["RAY_JOB_CONFIG_JSON_ENV_VAR"])
    with pytest.raises(ConfigError, match="run.storage_path"):
        load_config("configs/debug/internvl_tiny_sft.yaml", check_trl=False)
    cfg = load_config("configs/debug/internvl_tiny_sft.yaml", [f"run.storage_path={tmp_path}"], check_trl=False)
    assert str(cfg.run_dir) == str(tmp_path / "internvl_tiny_sft")


@pytest.mark.slow
def test_readme_ray_job_submit_without_storage_path(ray_cluster, checkout):
    """The README's `ray job submit --working-dir . -- python -m jobs.sft CONFIG`, from the root of
    a checkout, on a real head: refused (exit 2, nothing written in Ray's copy); with the
    documented `run.storage_path=$PWD/runs` the outputs land in the user's runs/."""
    from ray.job_submission import JobSubmissionClient

    env = {**ray_cluster.env, "PYTHONPATH": str(checkout), "VT_DASH": ray_cluster.dashboard_url}
    submit = 'ray job submit --address "$VT_DASH" --submission-id {id} --working-dir . -- python -m jobs.sft {cfg} {more}'
    cfg = "configs/debug/internvl_tiny_sft.yaml"
    r = subprocess.run(["bash", "-c", submit.format(id="vt-relative-storage", cfg=cfg, more="")],
                       cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "run.storage_path" in out and "runtime_resources" in out and "absolute path on storage every node sees" in out, out[-3000:]
    assert JobSubmissionClient(ray_cluster.dashboard_url).get_job_info("vt-relative-storage").driver_exit_code == 2
    assert not list(Path(ray_cluster.temp_dir).glob("session_*/runtime_resources/working_dir_files/*/runs"))
    r = subprocess.run(
        ["bash", "-c", submit.format(id="vt-pwd-storage", cfg=cfg, more="run.storage_path=$PWD/runs run.name=submitted sft.max_steps=2 sft.save_steps=2")],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert (checkout / "runs" / "submitted" / "sft" / "checkpoint-000002" / "trainer_state.json").is_file()
