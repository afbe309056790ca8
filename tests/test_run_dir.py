"""RunDir: every path of a run has one name, and the job config hands it out."""

from __future__ import annotations

from pathlib import Path

from vlm_train.config import load_config
from vlm_train.run_dir import RunDir


def test_layout(tmp_path):
    r = RunDir(tmp_path / "run")
    assert r.config == tmp_path / "run" / "config.yaml"
    assert r.base_model == tmp_path / "run" / "base_model"
    assert r.prepared == tmp_path / "run" / "data" / "prepared.json"
    assert r.split("train") == tmp_path / "run" / "data" / "train.jsonl"
    assert r.ray_stage("sft") == tmp_path / "run" / "sft"
    assert r.work("grpo", 1) == tmp_path / "run" / "work" / "grpo" / "rank1"
    assert r.failure_marker("sft") == tmp_path / "run" / "work" / "sft" / "failure_injected"
    assert r.model_pointer("sft") == tmp_path / "run" / "models" / "sft" / "MODEL"
    assert r.tensorboard("grpo") == tmp_path / "run" / "tensorboard" / "grpo"
    assert r.tensorboard_eval == tmp_path / "run" / "tensorboard" / "eval"
    assert r.stage_status("sft") == tmp_path / "run" / "stages" / "sft.json"
    assert r.stage_resumes("sft") == tmp_path / "run" / "stages" / "sft.resumes.jsonl"
    assert r.eval("base") == tmp_path / "run" / "eval" / "base.json"
    assert r.report == tmp_path / "run" / "report.json"
    assert r.slurm_log("%j") == tmp_path / "run" / "slurm-%j.out"
    assert str(r) == str(tmp_path / "run") and Path(r) == tmp_path / "run"


def test_final_model_follows_the_pointer(tmp_path):
    r = RunDir(tmp_path)
    assert r.final_model("sft") is None
    r.models("sft").mkdir(parents=True)
    r.model_pointer("sft").write_text("merged\n")
    assert r.final_model("sft") == tmp_path / "models" / "sft" / "merged"


def test_job_config_run_dir(repo, monkeypatch, tmp_path):
    monkeypatch.chdir(repo)
    cfg = load_config("configs/debug/internvl_tiny_sft.yaml", [f"run.storage_path={tmp_path}", "run.name=x"])
    assert cfg.run_dir == RunDir(tmp_path / "x")
