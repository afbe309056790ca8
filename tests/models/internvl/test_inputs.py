"""InternVL inputs: prompt ids/pixels equal the HF processor's; the official label rule; crops
after tool calls present in the pixels and never learned; truncation never splits an image."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from vlm_train.data.sample import Box, Message, Part, Sample, image, text
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.models.common import freeze_groups
from vlm_train.tools.crop import crop

FAM = get_family("internvl")


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_internvl):
    root = tmp_path_factory.mktemp("img")
    Image.new("RGB", (100, 60), (200, 30, 30)).save(root / "a.png")
    # b is tall: 2+ tiles, so tile counts differ per image
    im = Image.new("RGB", (40, 130), (20, 20, 220))
    im.paste((250, 250, 0), (0, 0, 40, 30))
    im.save(root / "b.png")
    return AutoProcessor.from_pretrained(tiny_internvl), root


def multi_turn() -> Sample:
    return Sample("m", [
        Message("system", [text("You are a grounding assistant.")]),
        Message("user", [image("a.png"), text("What colour?")]),
        Message("assistant", [text("red 123")]),
        Message("user", [image("b.png"), text("And the top of this one?")]),
        Message("assistant", [text("Let me look."), Part("tool_call", tool="crop", box=Box(0, 0, 40, 30))]),
        Message("tool", [Part("tool_response", source="b.png", box=Box(0, 0, 40, 30))]),
        Message("assistant", [text("yellow")]),
    ], image_sizes=[(100, 60), (40, 130)])


def test_prompt_matches_hf_processor(env):
    proc, root = env
    s = multi_turn()
    prompt = Sample("p", s.messages[:4], image_sizes=s.image_sizes)
    ours = FAM.make_inputs(proc, InputsConfig(image_roots=tuple([str(root)])))([prompt], for_generation=True)
    hf_msgs = [
        {"role": "system", "content": [{"type": "text", "text": "You are a grounding assistant."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red 123"}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And the top of this one?"}]},
    ]
    text_ = proc.apply_chat_template(hf_msgs, add_generation_prompt=True)
    ref = proc(images=[Image.open(root / "a.png"), Image.open(root / "b.png")], text=[text_], return_tensors="pt")
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    assert torch.equal(ours["pixel_values"], ref["pixel_values"])
    assert ref["pixel_values"].shape[0] > 2  # b.png tiled: the comparison covers several tiles


def test_labels_follow_official_rule_and_crops_are_inputs(env):
    proc, root = env
    tok = proc.tokenizer
    batch = FAM.make_inputs(proc, InputsConfig(image_roots=tuple([str(root)])))([multi_turn()])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    learned = tok.decode([i for i, lab in zip(ids.tolist(), labels.tolist(), strict=True) if lab != -100])
    call = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [0, 0, 1000, 231]}}</tool_call>'
    assert learned == f"red 123<|im_end|>Let me look.{call}<|im_end|>yellow<|im_end|>"
    # No vision token is ever a target; the system/user/tool text never is.
    vision = {tok.convert_tokens_to_ids(t) for t in ("<img>", "</img>", "<IMG_CONTEXT>")}
    assert not any(int(lab) in vision for lab in labels if lab != -100)
    # Three images: a (1 tile), b (several tiles), then the crop of b re-made from the original.
    a = proc.image_processor(images=[Image.open(root / "a.png").convert("RGB")], crop_to_patches=True, return_tensors="pt")["pixel_values"]
    b_img = Image.open(root / "b.png").convert("RGB")
    b = proc.image_processor(images=[b_img], crop_to_patches=True, return_tensors="pt")["pixel_values"]
    c = proc.image_processor(images=[crop(b_img, Box(0, 0, 40, 30))], crop_to_patches=True, return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], torch.cat([a, b, c]))
    n_ctx = int((ids == tok.convert_tokens_to_ids("<IMG_CONTEXT>")).sum())
    assert n_ctx == proc.image_seq_length * batch["pixel_values"].shape[0]
    # The tool turn (with the crop's image tokens) is entirely -100.
    resp = tok.convert_tokens_to_ids("<tool_response>")
    start = ids.tolist().index(resp)
    end = start + ids[start:].tolist().index(tok.convert_tokens_to_ids("</tool_response>"))
    assert (labels[start : end + 1] == -100).all()


def test_batch_padding_sides(env):
    proc, root = env
    build = FAM.make_inputs(proc, InputsConfig(image_roots=tuple([str(root)])))
    short = Sample("s", [Message("user", [image("a.png"), text("hi")]), Message("assistant", [text("ok")])])
    b = build([short, multi_turn()])
    assert b["attention_mask"][0, 0] == 1 and b["attention_mask"][0, -1] == 0  # right padded
    g = build([short, multi_turn()], for_generation=True)
    assert g["attention_mask"][0, 0] == 0 and g["attention_mask"][0, -1] == 1  # left padded


def test_truncation_never_splits_an_image(env):
    proc, root = env
    tok = proc.tokenizer
    full = FAM.make_inputs(proc, InputsConfig(image_roots=tuple([str(root)])))([multi_turn()])
    ids = full["input_ids"][0].tolist()
    start_b = [i for i, t in enumerate(ids) if t == tok.convert_tokens_to_ids("<img>")][1]
    cut = FAM.make_inputs(proc, InputsConfig(image_roots=tuple([str(root)]), max_length=start_b + 5))([multi_turn()])
    assert cut["input_ids"].shape[1] == start_b  # cut moved back before b's <img>
    a_tiles = proc.image_processor(images=[Image.open(root / "a.png")], crop_to_patches=True, return_tensors="pt")["pixel_values"]
    assert torch.equal(cut["pixel_values"], a_tiles)  # b's tiles (and the crop's) dropped with it


def test_freeze_groups(tiny_internvl):
    from vlm_train.config import ModelConfig

    model, _ = FAM.load(ModelConfig(path=str(tiny_internvl)), dtype=torch.float32)
    counts = freeze_groups(model, FAM.module_groups, {"vision": True, "projector": False, "llm": False})
    assert counts["vision"] > 0
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith("model.vision_tower")), name


def test_video_renders_as_single_tile_frames(env):
    """InternVL's video chat: num_frames sampled frames, one tile each, 'Frame{i}: <image>'."""
    import av
    import numpy as np

    proc, root = env
    with av.open(str(root / "clip.mp4"), "w") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = 128, 96, "yuv420p"
        for i in range(12):
            out.mux(st.encode(av.VideoFrame.from_ndarray(np.full((96, 128, 3), 20 * i, np.uint8), format="rgb24")))
        out.mux(st.encode())
    s = Sample("v", [Message("user", [image("b.png"), Part("video", media="clip.mp4"), text("What happens?")])])
    build = FAM.make_inputs(proc, InputsConfig(image_roots=(str(root),), num_frames=3))
    r = build.render(s, None, for_generation=True)
    assert [f"Frame{i}: " in r.text for i in (1, 2, 3)] == [True] * 3 and "Frame4" not in r.text
    assert r.frames == {1, 2, 3}
    batch = build([s], for_generation=True)
    _, tiles = build._pixels(r.images, r.frames)
    assert tiles[1:] == [1, 1, 1] and tiles[0] > 1  # the tall image is tiled, frames are not
    assert batch["pixel_values"].shape[0] == sum(tiles)
