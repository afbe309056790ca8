"""Qwen3-VL's per-token modality ids are derived from input_ids exactly as the processor builds
them, in forward (whatever wraps the model) and in generate (M-RoPE positions of the prompt)."""

from __future__ import annotations

import types

import pytest
import torch
from PIL import Image

from vlm_train.config import ModelConfig
from vlm_train.models import get_family
from vlm_train.models.qwen3_vl.modeling import token_types

FAM = get_family("qwen3_vl")


@pytest.fixture(scope="module")
def env(tiny_checkpoint):
    model, proc = FAM.load(ModelConfig(family="qwen3_vl", path=str(tiny_checkpoint("qwen3_vl"))), dtype=torch.float32)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is it?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    ims = [Image.new("RGB", (100, 60), (200, 30, 30)), Image.new("RGB", (40, 130), (20, 20, 220))]
    hf = proc(images=ims[:1], text=[text], return_tensors="pt")
    return model.eval(), proc, hf


def test_token_types_equal_the_processors(env):
    model, _, hf = env
    ours = token_types(hf["input_ids"], model.config.image_token_id, model.config.video_token_id)
    assert torch.equal(ours, hf["mm_token_type_ids"].to(ours.dtype)) and int(ours.sum()) > 0


def test_forward_without_token_types_even_when_rewrapped(env):
    """Trainers re-wrap the outer forward (e.g. accelerate's precision wrapper, PEFT calls it
    directly); the derivation sits on the inner model, so it holds."""
    from peft import LoraConfig, get_peft_model

    model, _, hf = env
    without = {k: v for k, v in hf.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        ref = model(**hf).logits
        model.forward = types.MethodType(type(model).forward, model)  # a fresh bound forward
        torch.testing.assert_close(model(**without).logits, ref)
        peft = get_peft_model(model, LoraConfig(r=2, target_modules=FAM.lora_targets[0]))
        torch.testing.assert_close(peft(**without).logits, ref)  # LoRA B = 0: same function
        peft.unload()


def test_generate_uses_the_mrope_positions_of_the_prompt(env):
    model, _, hf = env
    without = {k: v for k, v in hf.items() if k != "mm_token_type_ids"}
    kw = dict(max_new_tokens=6, do_sample=False)
    a = model.generate(**hf, **kw)
    deltas = model.model.rope_deltas.clone()
    b = model.generate(**without, **kw)
    assert torch.equal(a, b) and torch.equal(model.model.rope_deltas, deltas)
    # The image shifts positions (its tokens share grid positions), so the deltas are not 0.
    assert int(deltas.abs().sum()) > 0
