"""The SFT -> GRPO -> eval pipeline: report, TensorBoard box images, learning (conservative),
a resubmitted pipeline skipping finished stages, and one with a changed config refused."""

from __future__ import annotations

import json

import pytest

from vlm_train.testing.checks import tb_image_tags, tb_scalars

pytestmark = pytest.mark.slow
CFG = "configs/debug/internvl_tiny_pipeline.yaml"


def test_pipeline_report_learning_and_skip(repo, ray_cluster, tmp_path, monkeypatch, capsys):
    from jobs import pipeline

    monkeypatch.chdir(repo)
    storage = tmp_path / "runs"
    args = [CFG, f"run.storage_path={storage}", "run.name=pipe", f"cluster.address={ray_cluster.gcs_address}",
            # The quick start's job, shortened for CI: a smaller data set, 150 SFT steps.
            "data.synthetic.n=256", "data.synthetic.n_eval=32", "sft.max_steps=150", "sft.save_steps=150",
            "sft.eval_steps=50", "grpo.max_steps=2", "grpo.save_steps=2", "grpo.eval_steps=1",
            "model.tiny.vision_pretrain_steps=100"]
    assert pipeline.main(args) == 0
    out = capsys.readouterr().out
    assert "stage" in out and "Acc@0.5" in out and "report:" in out
    run = storage / "pipe"
    report = json.loads((run / "report.json").read_text())
    assert list(report) == ["base", "sft", "grpo"]
    for stage in report:
        ev = report[stage]["eval"]
        assert ev["n"] == 32 and 0 <= ev["acc"] <= 1 and set(ev["by_shapes"]) <= {"1", "2", "3"}
        assert 0 < ev["random_shape_baseline"] <= 1
    for stage in ("sft", "grpo"):
        assert report[stage]["wall_seconds"] > 0
    assert "reward_start" in report["grpo"] and "tool_calls_per_rollout" in report["grpo"]
    # Learning, conservatively: SFT beats the random base model on held-out mean IoU and box validity.
    assert report["sft"]["eval"]["mean_iou"] > report["base"]["eval"]["mean_iou"]
    assert report["sft"]["eval"]["box_valid"] > report["base"]["eval"]["box_valid"]
    # TensorBoard: evaluation scalars and images with boxes for every evaluation; GRPO reward scalars.
    tags = tb_image_tags(run / "tensorboard" / "eval")
    for stage in ("base", "sft", "grpo"):
        assert any(t.startswith(f"eval/{stage}/boxes/") for t in tags)
    assert "eval/sft/acc@0.5" in tb_scalars(run / "tensorboard" / "eval")
    assert "train/rewards/iou/mean" in tb_scalars(run / "tensorboard" / "grpo")
    # Held-out grounding while each stage trains (every eval_steps, all ranks): TensorBoard scalars
    # at >= 2 steps per stage, the same curve in report.json and a line of the table.
    for stage, steps in (("sft", [50, 100, 150]), ("grpo", [1, 2])):
        scalars = tb_scalars(run / "tensorboard" / stage)
        for tag in ("heldout/acc@0.5", "heldout/mean_iou", "heldout/named_shape_share"):
            assert [s for s, _ in scalars[tag]] == steps, (stage, tag, scalars.get(tag))
            assert all(0 <= v <= 1 for _, v in scalars[tag])
        assert any(t.startswith("heldout/named_shape_share/") and t.endswith("_shapes") for t in scalars)
        curve = report[stage]["heldout"]
        assert [e["step"] for e in curve] == steps and all(e["heldout/n"] == 16 for e in curve)
        assert [e["heldout/acc@0.5"] for e in curve] == [v for _, v in scalars["heldout/acc@0.5"]]
        assert f"{stage} held-out Acc@0.5 by step: " in out
    assert 0 <= report["sft"]["eval"]["named_shape_share"] <= 1
    # Rank 0's phase marks (benchmarks/step_overhead.py splits a stage's fixed cost with them), in order.
    phases = ["worker_entered", "env_ready", "model_loaded", "trainer_built", "trained", "final_saved"]
    for stage in ("sft", "grpo"):
        marks = json.loads((run / "stages" / f"{stage}.json").read_text())["timings"]
        assert list(marks) == phases and sorted(marks.values()) == [marks[k] for k in phases], (stage, marks)

    # (That GRPO moves the policy towards higher reward is shown by tests/train/test_grpo_update.py;
    # over a few CPU steps the reward curve itself is within sampling noise.)

    # Submitted again: nothing is retrained or re-evaluated.
    starts = (run / "stages" / "sft.resumes.jsonl").read_text()
    mtime = (run / "eval" / "sft.json").stat().st_mtime
    assert pipeline.main(args) == 0
    assert (run / "stages" / "sft.resumes.jsonl").read_text() == starts
    assert (run / "eval" / "sft.json").stat().st_mtime == mtime
    assert json.loads((run / "report.json").read_text())["sft"]["eval"] == report["sft"]["eval"]
    # Submitted again with a changed job: refused (exit 2) before any work, naming the key,
    # instead of handing back the old stage's model and figures as the new job's.
    capsys.readouterr()
    assert pipeline.main([*args, "sft.learning_rate=1.0e-3"]) == 2
    err = capsys.readouterr().err
    assert "sft.learning_rate: 0.002 -> 0.001" in err and "set another run.name" in err, err
    assert (run / "stages" / "sft.resumes.jsonl").read_text() == starts

    # stages: [eval] alone evaluates model.path (here the SFT model) and trains nothing.
    sft_model = report["sft"]["model"]
    assert pipeline.main([CFG, f"run.storage_path={storage}", "run.name=evalonly", f"cluster.address={ray_cluster.gcs_address}",
                          "data.synthetic.n=256", "data.synthetic.n_eval=32", "stages=[eval]", f"model.path={sft_model}"]) == 0
    only = json.loads((storage / "evalonly" / "report.json").read_text())
    assert list(only) == ["base"] and only["base"]["eval"]["n"] == 32
    assert only["base"]["eval"]["acc"] == report["sft"]["eval"]["acc"]  # greedy decoding: the same model, the same result
    assert not (storage / "evalonly" / "stages").exists()
