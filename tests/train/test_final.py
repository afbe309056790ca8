"""Final-model saving without Ray: a full model, and a LoRA adapter plus its merge, with the
MODEL pointer naming the loadable folder."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainingArguments

from vlm_train.config import JobConfig, LoraConfig, ModelConfig, RunConfig
from vlm_train.models import get_family
from vlm_train.testing.checks import safetensors_state
from vlm_train.train.final import save_final
from vlm_train.train.model import load_model, lora_config


def _cfg(tiny, tmp_path, lora: bool) -> JobConfig:
    return JobConfig(model=ModelConfig(family="internvl", path=str(tiny), lora=LoraConfig(enabled=lora, r=4)),
                     run=RunConfig(name="final", storage_path=str(tmp_path)))


def _trainer(model, tmp_path) -> Trainer:
    return Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[]))


def _logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_full_model(tiny_internvl, tmp_path):
    cfg = _cfg(tiny_internvl, tmp_path, lora=False)
    fam = get_family("internvl")
    model, proc = load_model(cfg, fam)
    with torch.no_grad():  # a changed model, so the saved weights are not just the base's
        head = model.get_output_embeddings().weight
        head.add_(torch.randn_like(head))
    out = save_final(_trainer(model, tmp_path), cfg, fam, proc, stage="sft", is_main=True)
    run = cfg.run_dir
    assert out == run.models("sft") / "full" and run.final_model("sft") == out
    assert run.model_pointer("sft").read_text() == "full\n"
    assert safetensors_state(out).keys() == safetensors_state(tiny_internvl).keys()
    reloaded, _ = fam.load(ModelConfig(path=str(out)), dtype=torch.float32)
    base, _ = fam.load(ModelConfig(path=str(tiny_internvl)), dtype=torch.float32)
    ids = torch.randint(0, 100, (1, 12))
    torch.testing.assert_close(_logits(reloaded, ids), _logits(model, ids))  # the trained weights, not the base's
    assert not torch.allclose(_logits(base, ids), _logits(model, ids))
    assert (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()


@pytest.mark.parametrize("merge", [True, False])
def test_lora_adapter_and_merge(merge, tiny_internvl, tmp_path):
    from peft import get_peft_model

    cfg = _cfg(tiny_internvl, tmp_path, lora=True)
    cfg.model.lora.merge_at_end = merge
    fam = get_family("internvl")
    base, proc = load_model(cfg, fam)
    model = get_peft_model(base, lora_config(cfg, fam))
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero: give the adapter an effect
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    out = save_final(_trainer(model, tmp_path), cfg, fam, proc, stage="grpo", is_main=True)
    run = cfg.run_dir
    adapter = safetensors_state(run.models("grpo") / "adapter")
    assert adapter and all("lora_" in k for k in adapter)
    ids = torch.randint(0, 100, (1, 12))
    if not merge:
        assert out == run.models("grpo") / "adapter" and run.model_pointer("grpo").read_text() == "adapter\n"
        assert not (run.models("grpo") / "merged").exists()
        return
    assert out == run.models("grpo") / "merged" and run.final_model("grpo") == out
    merged, _ = fam.load(ModelConfig(path=str(out)), dtype=torch.float32)
    assert not any("lora_" in k for k in safetensors_state(out))
    expected = _logits(model, ids)
    with model.disable_adapter():
        assert not torch.allclose(_logits(model, ids), expected, atol=1e-4)
    torch.testing.assert_close(_logits(merged, ids), expected, atol=1e-4, rtol=1e-4)


def test_only_rank0_writes(tiny_internvl, tmp_path):
    cfg = _cfg(tiny_internvl, tmp_path, lora=False)
    fam = get_family("internvl")
    model, proc = load_model(cfg, fam)
    assert save_final(_trainer(model, tmp_path), cfg, fam, proc, stage="sft", is_main=False) is None
    assert not cfg.run_dir.model_pointer("sft").exists()
