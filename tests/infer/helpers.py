"""Run directories shaped like a finished training run, built without training (fast)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from vlm_train.config import ModelConfig
from vlm_train.data import synthetic
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig


def trained_run(root: Path, family_name: str, base: Path, lora: bool = False, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """``root/run`` with config.yaml and models/sft/{full|adapter} + MODEL, as save_final writes
    them (training_args.bin included). Returns the run dir and the reference model (for LoRA:
    the unmerged PeftModel) whose logits an export must reproduce."""
    family = get_family(family_name)
    model, processor = family.load(ModelConfig(family=family_name, path=str(base)), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    run = root / "run"
    stage = run / "models" / "sft"
    if lora:
        from peft import LoraConfig, get_peft_model

        targets = family.lora_targets[0] if len(family.lora_targets) == 1 else family.lora_targets
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
        target = stage / "adapter"
    else:
        with torch.no_grad():  # "training" moved every weight
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        target = stage / "full"
    model.save_pretrained(str(target), safe_serialization=True)
    processor.save_pretrained(str(target))
    (target / "training_args.bin").write_bytes(b"pickled trainer state")  # what HF Trainer leaves
    (stage / "MODEL").write_text(target.name + "\n")
    cfg = {"model": {"family": family_name, "path": str(base)}, "stages": ["sft"], "run": {"name": "run"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run, model.eval()


def grounding_batch(family_name: str, processor, root: Path, n: int = 2):
    """A real training batch of synthetic grounding samples for ``family_name``."""
    family = get_family(family_name)
    samples = synthetic.generate(root / "synth", n, seed=3, image_size=64, answer=family.grounding_answer, prompt=family.grounding_prompt)
    return family.make_inputs(processor, InputsConfig(image_roots=(str(root / "synth"),)))(samples)


@torch.no_grad()
def logits(model, batch) -> torch.Tensor:
    kw = {k: v for k, v in batch.items() if k != "labels" and torch.is_tensor(v)}
    return model(**kw).logits.float()
