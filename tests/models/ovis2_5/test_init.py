"""The family contract: load from a ModelConfig, module groups, LoRA targets, registration."""

from __future__ import annotations

import re
import subprocess
import sys

import torch

from vlm_train.config import ModelConfig
from vlm_train.models import get_family
from vlm_train.models.ovis2_5 import FAMILY


def test_family_is_registered():
    assert get_family("ovis2_5") is FAMILY


def test_load_from_model_config(tiny_dir):
    model, processor = FAMILY.load(ModelConfig(family="ovis2_5", path=str(tiny_dir), max_pixels=2048))
    assert model.dtype == torch.float32  # auto on CPU
    assert model.config._attn_implementation == "sdpa"
    assert processor.max_pixels == 2048
    assert FAMILY.suppress_token_ids(processor) == [
        processor.tokenizer.convert_tokens_to_ids(t)
        for t in ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
    ]


def test_module_groups_partition_parameters(tiny_model):
    groups = FAMILY.module_groups
    for name, _ in tiny_model.named_parameters():
        owners = [g for g, prefixes in groups.items() if name.startswith(tuple(prefixes))]
        assert len(owners) == 1, name


def test_lora_targets_hit_only_the_llm(tiny_model):
    pattern = re.compile(FAMILY.lora_targets[0])
    hits = [n for n, m in tiny_model.named_modules() if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n)]
    assert hits and all(n.startswith("llm.model.layers.") for n in hits)
    assert len(hits) == 7 * tiny_model.config.llm_config.num_hidden_layers


def test_import_vlm_train_is_light_and_registers_on_use(tiny_dir):
    code = (
        "import sys, vlm_train\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tiny_dir)!r})\n"
        "print(type(m).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("Ovis2_5")


def test_chat_assistant_header_matches_generation_prompts(processor):
    from vlm_train.data.sample import Message, Sample, text
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    s = Sample("h", [Message("user", [text("Hi")])])
    for thinking in (False, True):
        batch = Ovis2_5Inputs(processor, enable_thinking=thinking)([s], for_generation=True)
        prompt = processor.tokenizer.decode(batch["input_ids"][0])
        assert prompt.endswith(FAMILY.chat.assistant_header(thinking))
    assert FAMILY.chat.assistant_header(False).endswith("<think>\n\n</think>\n\n")
