"""End-to-end SFT on a real Ray head: `ray job submit`, ZeRO-2 and ZeRO-3 with 2 workers,
resume after a stop, a failed job's console, restart after a worker failure, LoRA save + merge."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from vlm_train.models.base import InputsConfig
from vlm_train.testing.checks import mean_loss, safetensors_state, tb_scalars

pytestmark = pytest.mark.slow
CFG = "configs/debug/internvl_tiny_sft.yaml"
CFG3 = "configs/debug/internvl_tiny_sft_zero3.yaml"


def run_in_process(repo: Path, monkeypatch, cluster, *args: str) -> int:
    """jobs.sft.main against the shared cluster (the pytest process is the Ray driver)."""
    from jobs import sft

    monkeypatch.chdir(repo)
    return sft.main([*args, f"cluster.address={cluster.gcs_address}"])


def fixed_set_loss(model_dir: Path, run_dir: Path, n: int = 16) -> float:
    """Loss of the model in ``model_dir`` on the first ``n`` training samples of the run."""
    from vlm_train.config import ModelConfig
    from vlm_train.data.sample import Sample
    from vlm_train.models import get_family

    fam = get_family("internvl")
    model, proc = fam.load(ModelConfig(path=str(model_dir)), dtype=torch.float32)
    prepared = json.loads((run_dir / "data" / "prepared.json").read_text())
    samples = [Sample.from_json(x) for x in Path(prepared["train"]).read_text().splitlines()[:n]]
    build = fam.make_inputs(proc, InputsConfig(image_roots=tuple(prepared["image_roots"])))
    return mean_loss(model, [build(samples[i : i + 4]) for i in range(0, n, 4)])


RAY_CLIENT_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+\t(INFO|WARNING|SUCC) (cli|working_dir|packaging|dashboard_sdk|sdk)\.py:\d+ -- ")


def assert_quiet_console(out: str, run: Path) -> None:
    """The console of a job: our lines only; library and worker output in the run's logs/."""
    out = out.split("Tailing logs until the job exits", 1)[-1]  # the job's own output, not the ray CLI's
    # The `ray job submit` client logs to its own stderr (packaging notes such as ".git is ignored by
    # default"); those lines are the CLI's, in Ray's client log format, not the job's console.
    lines = [ln for ln in out.splitlines() if not RAY_CLIENT_LINE.match(ln)]
    assert not [ln for ln in lines if "Warning" in ln or "WARNING" in ln], out[-4000:]
    assert not re.search(r"LOAD_GLOBAL|LOAD_ATTR|\bRESUME\b", out), out[-4000:]  # no bytecode dump
    assert not [ln for ln in lines if "RayTrainWorker" in ln or "TrainController" in ln], out[-4000:]
    assert re.search(r"^sft: 2 workers on pool local-cpu, 12 steps of 8 samples", out, re.M), out[-4000:]
    assert re.search(r"^sft\s+12/12\s+loss \d", out, re.M), out[-4000:]  # progress, last step (not a terminal)
    assert re.search(r"^sft: done in \d\d:\d\d, steps 0 -> 12, checkpoints in .*/sft, model .*/models/sft/full$", out, re.M), out[-4000:]
    assert re.search(r"^stage +Acc@0\.5 .* wall s$", out, re.M) and re.search(r"^sft +- ", out, re.M), out[-4000:]
    for rank in (0, 1):
        log = (run / "logs" / "sft" / f"rank{rank}.log").read_text()
        assert log.strip(), f"rank{rank}.log is empty"  # the worker's own output (libraries' included) landed here
    assert "final model at" in (run / "logs" / "sft" / "rank0.log").read_text()


def test_ray_job_submit_zero2(repo, ray_cluster, tmp_path):
    storage = tmp_path / "runs"
    env = dict(ray_cluster.env)
    r = subprocess.run(
        [
            "ray", "job", "submit", "--address", ray_cluster.dashboard_url, "--working-dir", str(repo),
            "--submission-id", "vt-sft-submit",
            "--", "python", "-m", "jobs.sft", CFG, f"run.storage_path={storage}", "run.name=submitted", "sft.max_steps=12",
        ],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert_quiet_console(r.stdout + r.stderr, storage / "submitted")
    from ray.job_submission import JobStatus, JobSubmissionClient

    assert JobSubmissionClient(ray_cluster.dashboard_url).get_job_status("vt-sft-submit") == JobStatus.SUCCEEDED
    run = storage / "submitted"
    assert (run / "sft" / "checkpoint-000012" / "trainer_state.json").is_file()
    scalars = tb_scalars(run / "tensorboard" / "sft")
    assert len(scalars["train/loss"]) == 12
    assert "train/tokens_per_second" in scalars and "train/grad_norm" in scalars and "train/learning_rate" in scalars
    # The weights moved, and the loss on a fixed slice of the training set went down.
    base, final = safetensors_state(run / "base_model"), safetensors_state(run / "models" / "sft" / "full")
    assert base.keys() == final.keys()
    assert any(not torch.equal(base[k], final[k]) for k in base)
    before, after = fixed_set_loss(run / "base_model", run), fixed_set_loss(run / "models" / "sft" / "full", run)
    assert after < before - 0.1, (before, after)
    # What others load holds no pickle (training_args.bin is replaced by training_args.json).
    assert not [p for p in (run / "models").rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]


def test_zero3_lora_merge_matches_adapter(repo, ray_cluster, tmp_path, monkeypatch):
    from peft import PeftModel

    from vlm_train.config import ModelConfig
    from vlm_train.data.sample import Sample
    from vlm_train.models import get_family

    storage = tmp_path / "runs"
    rc = run_in_process(repo, monkeypatch, ray_cluster, CFG3, f"run.storage_path={storage}", "run.name=z3lora",
                        "model.lora.enabled=true", "model.lora.r=8")
    assert rc == 0
    run = storage / "z3lora"
    assert (run / "models" / "sft" / "MODEL").read_text().strip() == "merged"
    fam = get_family("internvl")
    base, proc = fam.load(ModelConfig(path=str(run / "base_model")), dtype=torch.float32)
    wrapped = PeftModel.from_pretrained(base, str(run / "models" / "sft" / "adapter")).eval()
    merged, _ = fam.load(ModelConfig(path=str(run / "models" / "sft" / "merged")), dtype=torch.float32)
    prepared = json.loads((run / "data" / "prepared.json").read_text())
    samples = [Sample.from_json(x) for x in Path(prepared["train"]).read_text().splitlines()[:4]]
    batch = fam.make_inputs(proc, InputsConfig(image_roots=tuple(prepared["image_roots"])))(samples)
    with torch.no_grad():
        a, b = wrapped(**batch).logits, merged.eval()(**batch).logits
    # The adapter changed the model (else the comparison below is vacuous) ...
    with torch.no_grad(), wrapped.disable_adapter():
        assert not torch.allclose(wrapped(**batch).logits, a, atol=1e-4)
    # ... and merging it reproduces the adapter-wrapped logits: fp32, tolerance 1e-4 absolute.
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # Only adapter weights were trained: the adapter file holds LoRA tensors alone.
    adapter = safetensors_state(run / "models" / "sft" / "adapter")
    assert adapter and all("lora_" in k for k in adapter)
    assert not [p for p in (run / "models").rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]


def test_resume_after_stop_and_restart_after_failure(repo, ray_cluster, tmp_path, monkeypatch, capsys):
    storage = tmp_path / "runs"
    common = [CFG, f"run.storage_path={storage}", "run.name=resume", "sft.save_steps=2", "sft.max_steps=8"]
    # 1) stopped (as if preempted) right after its first checkpoint
    assert run_in_process(repo, monkeypatch, ray_cluster, *common, "run.stop_at_step=2") == 3
    run = storage / "resume"
    first = json.loads((run / "stages" / "sft.json").read_text())
    assert first["global_step"] == 2 and not first["complete"]
    # 2) submitted again with no restarts allowed: rank 0 crashes at step 3 and the job fails.
    #    The console names the worker's own exception (not Ray's wrapper) and the log holding
    #    its traceback.
    capsys.readouterr()
    rc = run_in_process(repo, monkeypatch, ray_cluster, *common, "run.fail_at_step=3", "run.max_failures=0")
    assert rc == 1
    console = capsys.readouterr()
    rank0_log = run / "logs" / "sft" / "rank0.log"
    assert "error: sft failed on rank 0: RuntimeError: injected failure at step 3 (run.fail_at_step)" in console.err, console
    assert f"full log: {rank0_log}" in console.err, console
    assert "Training failed due to worker errors" not in console.out + console.err, console
    assert re.search(r"Traceback[^\n]*\n(.*\n)*RuntimeError: injected failure at step 3", rank0_log.read_text())
    # 3) submitted again: continues at step 3; a worker crash at step 5 restarts the group,
    #    which continues from the step-4 checkpoint.
    (run / "work" / "sft" / "failure_injected").unlink()  # step 2 left the once-only marker
    rc = run_in_process(repo, monkeypatch, ray_cluster, *common, "run.fail_at_step=5", "run.max_failures=1")
    assert rc == 0
    assert (run / "work" / "sft" / "failure_injected").read_text() == "5"
    starts = [json.loads(x)["start_step"] for x in (run / "stages" / "sft.resumes.jsonl").read_text().splitlines()]
    assert starts == [0, 2, 2, 4]
    final = json.loads((run / "stages" / "sft.json").read_text())
    assert final["complete"] and final["global_step"] == 8
    # Each step's loss was logged once per attempt that ran it: step 1 only by the first run.
    logged_steps = [e["step"] for e in final["log_history"] if "loss" in e]
    assert logged_steps[0] == 1 and logged_steps[-1] == 8 and logged_steps.count(1) == 1
