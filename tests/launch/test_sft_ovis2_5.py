"""End-to-end SFT of the tiny Ovis2.5 through jobs.sft: 2 workers, ZeRO-3 + LoRA (the debug
config) and ZeRO-2 full fine-tuning with packed rows and the disk input cache; loss finite and
decreasing, LoRA saved and merged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vlm_train.models.base import InputsConfig
from vlm_train.testing.checks import safetensors_state

pytestmark = pytest.mark.slow
CFG = "configs/debug/ovis2_5_tiny_sft.yaml"


def run_in_process(repo: Path, monkeypatch, cluster, *args: str) -> int:
    from jobs import sft

    monkeypatch.chdir(repo)
    return sft.main([*args, f"cluster.address={cluster.gcs_address}"])


def _losses(run: Path) -> list[float]:
    status = json.loads((run / "stages" / "sft.json").read_text())
    return [e["loss"] for e in status["log_history"] if "loss" in e]


def test_zero3_lora_two_workers(repo, ray_cluster, tmp_path, monkeypatch):
    from peft import PeftModel

    from vlm_train.config import ModelConfig
    from vlm_train.data.sample import Sample
    from vlm_train.models import get_family

    storage = tmp_path / "runs"
    assert run_in_process(repo, monkeypatch, ray_cluster, CFG, f"run.storage_path={storage}", "run.name=ovis_z3lora") == 0
    run = storage / "ovis_z3lora"
    losses = _losses(run)
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses

    assert (run / "models" / "sft" / "MODEL").read_text().strip() == "merged"
    adapter = safetensors_state(run / "models" / "sft" / "adapter")
    assert adapter and all("lora_" in k for k in adapter)
    assert all(".llm." in k for k in adapter)  # the ViT's q/k/v_proj are not adapted

    fam = get_family("ovis2_5")
    base, proc = fam.load(ModelConfig(family="ovis2_5", path=str(run / "base_model")), dtype=torch.float32)
    wrapped = PeftModel.from_pretrained(base, str(run / "models" / "sft" / "adapter")).eval()
    merged, _ = fam.load(ModelConfig(family="ovis2_5", path=str(run / "models" / "sft" / "merged")), dtype=torch.float32)
    prepared = json.loads((run / "data" / "prepared.json").read_text())
    samples = [Sample.from_json(x) for x in Path(prepared["train"]).read_text().splitlines()[:4]]
    batch = fam.make_inputs(proc, InputsConfig(image_roots=tuple(prepared["image_roots"])))(samples)
    with torch.no_grad():
        a, b = wrapped(**batch).logits, merged.eval()(**batch).logits
        with wrapped.disable_adapter():
            assert not torch.allclose(wrapped(**batch).logits, a, atol=1e-4)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # The merged checkpoint is a plain Ovis2.5 directory with the official key names.
    keys = set(safetensors_state(run / "models" / "sft" / "merged"))
    assert "vte.weight" in keys and not any("lora" in k or "base_layer" in k for k in keys)


def test_zero2_full_two_workers_packed(repo, ray_cluster, tmp_path, monkeypatch):
    storage = tmp_path / "runs"
    rc = run_in_process(
        repo, monkeypatch, ray_cluster, CFG, f"run.storage_path={storage}", "run.name=ovis_z2full",
        "model.lora.enabled=false", "deepspeed.config=configs/deepspeed/zero2.json", "sft.learning_rate=5.0e-4",
        "sft.packing=true", "sft.per_device_train_batch_size=1", "sft.max_length=256", "data.cache=disk",
    )
    assert rc == 0
    run = storage / "ovis_z2full"
    losses = _losses(run)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    # Packed rows hold several samples: more real tokens per step than one padded sample would.
    history = json.loads((run / "stages" / "sft.json").read_text())["log_history"]
    seen = [e["num_input_tokens_seen"] for e in history if "num_input_tokens_seen" in e]
    assert seen and seen[0] > 256  # 2 ranks x 1 row of <= 256 tokens, each row holding real tokens only
    assert list((run / "cache" / "inputs").glob("*.safetensors"))  # images decoded once, kept on disk
    base, final = safetensors_state(run / "base_model"), safetensors_state(run / "models" / "sft" / "full")
    assert base.keys() == final.keys()
    # Full fine-tuning moved the vision tower, the visual head and the LLM.
    for key in ("visual_tokenizer.vit.vision_model.encoder.layers.0.mlp.fc1.weight",
                "visual_tokenizer.head.0.weight", "llm.model.layers.0.mlp.up_proj.weight"):
        assert not torch.equal(base[key], final[key]), key
