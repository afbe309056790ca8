"""Conformance of every registered family's model side (a new family is tested by registering
it in vlm_train/models/__init__.py): inputs equal the HF processor's (where the family ships one),
the label rule, truncation never through a vision span, the rollout crop reaching the model with
tool tokens carrying no loss, save -> load -> identical logits, LoRA on the language model only.
Box text round trips are in tests/models/test_contract.py."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

from vlm_train.config import ModelConfig, ToolsConfig, load_config
from vlm_train.data.sample import Box, GroundingTarget, Message, Part, Sample, image, text
from vlm_train.models import FAMILIES, get_family
from vlm_train.models.base import InputsConfig
from vlm_train.tools.crop import crop
from vlm_train.train.rollout import CropToolRollout, merge_mm

NAMES = sorted(FAMILIES)
CALL_BOX = Box(0, 0, 40, 30)  # on b.png (40x130)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformance_img")
    Image.new("RGB", (100, 60), (200, 30, 30)).save(root / "a.png")
    im = Image.new("RGB", (40, 130), (20, 20, 220))
    im.paste((250, 250, 0), (0, 0, 40, 30))
    im.save(root / "b.png")
    return root


@pytest.fixture(scope="module", params=NAMES)
def env(request, tiny_checkpoint, images):
    fam = get_family(request.param)
    path = tiny_checkpoint(fam.name)
    model, proc = fam.load(ModelConfig(family=fam.name, path=str(path)), dtype=torch.float32)
    return fam, model.eval(), proc, images, path


def builder(fam, proc, root, **kw):
    return fam.make_inputs(proc, InputsConfig(image_roots=(str(root),), **kw))


def multi_turn(fam) -> Sample:
    call = Part("tool_call", tool="crop", box=CALL_BOX)
    return Sample("m", [
        Message("system", [text("You are a grounding assistant.")]),
        Message("user", [image("a.png"), text("What colour?")]),
        Message("assistant", [text("red 123")]),
        Message("user", [image("b.png"), text("And the top of this one?")]),
        Message("assistant", [text("Let me look."), call]),
        Message("tool", [Part("tool_response", source="b.png", box=CALL_BOX)]),
        Message("assistant", [text("yellow")]),
    ], image_sizes=[(100, 60), (40, 130)])


def learned_text(proc, batch, row=0) -> str:
    ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
    return proc.tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])


def logits(model, batch) -> torch.Tensor:
    kw = {k: v for k, v in batch.items() if k != "labels" and torch.is_tensor(v)}
    with torch.no_grad():
        return model(**kw).logits


def test_prompt_inputs_equal_the_hf_processor(env):
    """Golden: ids and every tensor equal the processor's, and so do the logits (which covers
    what the model derives from them, e.g. Qwen3-VL's M-RoPE positions)."""
    fam, model, proc, root, _ = env
    if not type(proc).__module__.startswith("transformers."):
        pytest.skip(f"{fam.name} ships its own processor (no transformers processor to compare with)")
    s = multi_turn(fam)
    prompt = Sample("p", s.messages[:4], image_sizes=s.image_sizes)
    ours = builder(fam, proc, root)([prompt], for_generation=True)
    msgs = [{"role": m.role, "content": [{"type": "image"} if p.type == "image" else {"type": "text", "text": p.text}
                                         for p in m.content]} for m in prompt.messages]
    hf_text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    hf = proc(images=[Image.open(root / "a.png"), Image.open(root / "b.png")], text=[hf_text], return_tensors="pt")
    assert torch.equal(ours["input_ids"], hf["input_ids"])
    for key, value in ours.items():
        assert key in hf, f"{key} is not a processor output"
        assert torch.equal(value, hf[key].to(value.dtype)), key
    assert set(ours) >= {"input_ids", "attention_mask", "pixel_values"}
    torch.testing.assert_close(logits(model, ours), logits(model, hf), atol=1e-5, rtol=1e-5)


def test_label_rule_and_crops_are_inputs(env):
    """Only assistant content and its turn end are learned; the tool call is learned; vision
    tokens, system/user/tool text and the crop never are."""
    fam, model, proc, root, _ = env
    batch = builder(fam, proc, root)([multi_turn(fam)])
    chat, end = fam.chat, fam.chat.turn_end
    learned = learned_text(proc, batch).replace(chat.empty_think, "")
    # The call is the family's JSON with the box in its convention (a family may format the
    # numbers, e.g. "0.000", and put a newline before the call, as its template does).
    i0, i1 = learned.index(chat.tool_call_open), learned.index(chat.tool_call_close) + len(chat.tool_call_close)
    body = json.loads(learned[i0 + len(chat.tool_call_open): i1 - len(chat.tool_call_close)])
    assert body["name"] == "crop"
    assert body["arguments"]["bbox_2d"] == pytest.approx(fam.coords.to_values(CALL_BOX, 40, 130))
    squeezed = "".join((learned[:i0] + "CALL" + learned[i1:]).split())
    assert squeezed == "".join(f"red 123{end}Let me look.CALL{end}yellow{end}".split())
    vision = set(fam.suppress_token_ids(proc))
    assert not any(int(lab) in vision for lab in batch["labels"][0] if lab != -100)
    assert int((batch["labels"] != -100).sum()) < int(batch["attention_mask"].sum()) // 2
    assert torch.isfinite(model(**batch).loss)


def test_truncation_never_cuts_through_a_vision_span(env):
    """At every cut the batch is consistent (the model's own image-token/feature check passes),
    within max_length, and keeps only whole images."""
    fam, model, proc, root, _ = env
    s = multi_turn(fam)
    full = builder(fam, proc, root)([s])
    n = int(full["attention_mask"].sum())
    vision = torch.tensor(fam.suppress_token_ids(proc))
    ids = full["input_ids"][0]
    # Vision spans: the family's vision tokens (markers included), or negative placeholder ids.
    is_vision = (torch.isin(ids, vision) | (ids < 0)).tolist()
    inside = [i for i in range(1, n - 1) if is_vision[i - 1] and is_vision[i]]
    cuts = sorted({inside[0], inside[len(inside) // 2], inside[-1], n - 3, n // 3})
    for cut in cuts:
        b = builder(fam, proc, root, max_length=cut)([s])
        m = int(b["attention_mask"].sum())
        assert m <= cut
        assert torch.equal(b["input_ids"][0, :m], full["input_ids"][0, :m])
        assert not (0 < m < n and is_vision[m - 1] and is_vision[m]), f"max_length={cut} splits a vision span"
        assert torch.isfinite(logits(model, b)).all()


class Scripted(torch.nn.Module):
    """A real model whose ``generate`` replays scripted tokens and records its inputs."""

    def __init__(self, model, script):
        super().__init__()
        self.model, self.script, self.calls = model, list(script), []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        self.calls.append({"input_ids": input_ids.clone(), **{k: v for k, v in kw.items() if torch.is_tensor(v)}})
        new = torch.tensor([self.script.pop(0)[:max_new_tokens]] * input_ids.size(0))
        return torch.cat([input_ids, new], dim=1)


def test_rollout_crop_reaches_the_model_and_tool_tokens_carry_no_loss(env):
    fam, model, proc, root, _ = env
    build = builder(fam, proc, root)
    rollout = CropToolRollout(fam, proc, build, ToolsConfig(max_calls=2), [str(root)])
    tok = proc.tokenizer
    w, h = 40, 130
    call = fam.chat.tool_call("crop", {"bbox_2d": fam.coords.to_values(CALL_BOX, w, h)})
    answer = fam.box_to_text(CALL_BOX, w, h) + fam.chat.turn_end
    scripted = Scripted(model, [tok(call, add_special_tokens=False).input_ids, tok(answer, add_special_tokens=False).input_ids])
    sample = Sample("s", [Message("user", [image("b.png"), text("Where is the yellow band?")]),
                          Message("assistant", [text("x")])], image_sizes=[(w, h)],
                    targets=[GroundingTarget("the yellow band", CALL_BOX)])
    row = rollout.start(sample)
    rollout.generate(scripted, [row], {"do_sample": False}, max_completion=400)
    assert row.calls == 1 and row.done and len(scripted.calls) == 2

    # The continuation's tensors are the prompt image's then the crop's, as the builder makes them.
    original = Image.open(root / "b.png").convert("RGB")
    crop_turn = Sample("t", [Message("tool", [Part("tool_response", media="<crop>")])])
    expected = merge_mm([{k: v for k, v in build([dataclasses.replace(sample, messages=sample.messages[:1])],
                                                  for_generation=True).items() if k not in ("input_ids", "attention_mask")},
                         {k: v for k, v in build([crop_turn], images=[[crop(original, CALL_BOX)]]).items()
                          if k not in ("input_ids", "attention_mask", "labels")}])
    cont = scripted.calls[1]
    for key, value in expected.items():
        assert torch.equal(cont[key], value.to(cont[key].dtype)), key
    assert row.crops and row.crops[0].size == crop(original, CALL_BOX).size != original.size

    # Tool-turn tokens are exactly the mask's zeros; the generated call and answer are ones.
    gen = tok(call, add_special_tokens=False).input_ids
    assert row.completion_ids[: len(gen)] == gen and row.mask[: len(gen)] == [1] * len(gen)
    zeros = [t for t, m in zip(row.completion_ids, row.mask, strict=True) if m == 0]
    assert zeros and tok.decode([t for t in zeros if t >= 0]).count(fam.chat.tool_response_open) == 1
    assert sum(row.mask) == len(gen) + len(tok(answer, add_special_tokens=False).input_ids)
    # The GRPO scoring forward over the whole row (ids + every image's tensors) runs.
    ids = torch.tensor([row.ids])
    out = logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), **merge_mm(row.mm)})
    assert out.shape[1] == len(row.ids) and torch.isfinite(out).all()


def test_save_then_load_gives_identical_logits(env, tmp_path):
    fam, model, proc, root, _ = env
    batch = builder(fam, proc, root)([multi_turn(fam)])
    model.save_pretrained(tmp_path, safe_serialization=True)
    proc.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")) and list(tmp_path.glob("*.safetensors"))
    again, proc2 = fam.load(ModelConfig(family=fam.name, path=str(tmp_path)), dtype=torch.float32)
    batch2 = builder(fam, proc2, root)([multi_turn(fam)])
    for k in batch:
        if torch.is_tensor(batch[k]):
            assert torch.equal(batch[k], batch2[k]), k
    assert torch.equal(logits(model, batch), logits(again.eval(), batch))


def test_lora_targets_touch_only_the_language_model(env):
    from peft import get_peft_model

    from vlm_train.train.model import lora_config

    fam, _, _, _, path = env
    cfg = load_config("configs/debug/internvl_tiny_sft.yaml", [f"model.family={fam.name}", "model.lora.enabled=true"])
    fresh, _ = fam.load(ModelConfig(family=fam.name, path=str(path)), dtype=torch.float32)
    peft = get_peft_model(fresh, lora_config(cfg, fam))
    adapted = {n.split(".lora_")[0] for n, _ in peft.named_parameters() if ".lora_" in n}
    llm = tuple("base_model.model." + p for p in fam.module_groups["llm"])
    assert adapted and all(n.startswith(llm) for n in adapted), sorted(adapted)[:5]
    # Every attention and MLP projection of the language model is adapted.
    kinds = {n.rsplit(".", 1)[-1] for n in adapted}
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= kinds
