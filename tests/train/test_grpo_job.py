"""GRPO end to end on a real Ray head: 2 workers, ZeRO-2 / ZeRO-3, reward scalars in TensorBoard."""

from __future__ import annotations

import json

import pytest

from vlm_train.testing.checks import tb_scalars

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "family,ds",
    [("internvl", "zero3"), ("ovis2_5", "zero2"), ("ovis2_5", "zero3")],
)
def test_grpo_job(family, ds, repo, ray_cluster, tmp_path, monkeypatch):
    from jobs import grpo

    monkeypatch.chdir(repo)
    storage = tmp_path / "runs"
    rc = grpo.main([
        "configs/debug/internvl_tiny_grpo.yaml", f"model.family={family}", f"deepspeed.config=configs/deepspeed/{ds}.json",
        f"run.storage_path={storage}", f"run.name=g-{family}-{ds}", f"cluster.address={ray_cluster.gcs_address}",
        "grpo.max_steps=2", "grpo.save_steps=2", "grpo.max_completion_length=24", "data.synthetic.n=16",
    ])
    assert rc == 0
    run = storage / f"g-{family}-{ds}"
    status = json.loads((run / "stages" / "grpo.json").read_text())
    assert status["complete"] and status["global_step"] == 2
    scalars = tb_scalars(run / "tensorboard" / "grpo")
    for name in ("iou", "format", "region"):
        assert f"train/rewards/{name}/mean" in scalars and f"train/rewards/{name}/std" in scalars
    assert "train/completions/mean_length" in scalars and "train/tools/calls_per_rollout" in scalars
    for name in ("rollout_s", "score_s", "update_s", "rollout_share", "tokens_generated_per_s", "crop_calls_per_s"):
        assert f"train/perf/{name}" in scalars, name
    assert (run / "grpo" / "checkpoint-000002" / "trainer_state.json").is_file()
    assert (run / "models" / "grpo" / "MODEL").is_file()
