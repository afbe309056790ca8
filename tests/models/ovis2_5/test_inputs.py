"""Input builder: token-level labels, padding sides, atom/pixel order, truncation, media loading."""

from __future__ import annotations

import pytest
import torch

from tests.models.ovis2_5.conftest import noise_image
from vlm_train.data.media import MediaError
from vlm_train.data.sample import Box, Message, Part, Sample, image, text
from vlm_train.models.ovis2_5 import constants as C
from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs, select_rows


def _thinking_sample() -> Sample:
    return Sample(
        "t",
        [
            Message("user", [image("a.png"), text("What shape?")]),
            Message("assistant", [text("<think>\nround\n</think>\n\nA circle.")]),
            Message("user", [text("Colour?")]),
            Message("assistant", [text("Red.")]),
        ],
    )


def test_labels_of_multi_turn_thinking_sample(processor):
    tok = processor.tokenizer
    batch = Ovis2_5Inputs(processor)([_thinking_sample()], images=[[noise_image(64, 64)]])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    learned = ids[labels != -100].tolist()
    assert tok.decode(learned) == "<think>\nround\n</think>\n\nA circle.<|im_end|>Red.<|im_end|>"
    # Labels equal ids wherever learned (no shift in the collator; the model shifts).
    assert torch.equal(labels[labels != -100], ids[labels != -100])
    # Visual span: 64x64 -> 8x8 patches -> 16 atoms, framed by the image indicators, unlearned.
    assert (ids == C.VISUAL_ATOM_ID).sum() == 16
    assert (ids == C.IMAGE_START_ID).sum() == 1 and (ids == C.IMAGE_END_ID).sum() == 1
    assert (labels[ids < 0] == -100).all()
    # The sequence ends with the last <|im_end|> (final "\n" dropped), which is learned.
    assert tok.decode(ids[-1:]) == "<|im_end|>" and labels[-1] == ids[-1]


def test_right_pad_for_training_left_pad_for_generation(processor):
    build = Ovis2_5Inputs(processor)
    short = Sample("s", [Message("user", [text("Hi")]), Message("assistant", [text("Hello.")])])
    samples, imgs = [short, _thinking_sample()], [[], [noise_image(64, 64)]]
    train = build(samples, images=imgs)
    assert train["attention_mask"][0, 0] == 1 and train["attention_mask"][0, -1] == 0
    assert (train["input_ids"][0][train["attention_mask"][0] == 0] == processor.tokenizer.pad_token_id).all()
    assert (train["labels"][0][train["attention_mask"][0] == 0] == -100).all()
    gen = build(samples, images=imgs, for_generation=True)
    assert "labels" not in gen
    assert gen["attention_mask"][0, 0] == 0 and gen["attention_mask"][0, -1] == 1
    tail = processor.tokenizer.decode(gen["input_ids"][0][gen["attention_mask"][0] == 1])
    assert tail.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_pixels_follow_atom_order_across_batch(processor):
    build = Ovis2_5Inputs(processor)
    two = Sample("two", [Message("user", [image("a"), image("b"), text("Same?")]), Message("assistant", [text("No.")])])
    one = Sample("one", [Message("user", [image("c"), text("Hi")]), Message("assistant", [text("Yes.")])])
    a, b, c = noise_image(64, 64, 1), noise_image(32, 64, 2), noise_image(48, 48, 3)
    batch = build([two, one], images=[[a, b], [c]])
    grids = batch["grid_thws"].tolist()
    # Two images share one budget: max(min, max // 2) pixels each.
    each = [build.encode(s, i).visuals for s, i in ((two, [a, b]), (one, [c]))]
    assert grids == [list(v.grid_thw) for vs in each for v in vs]
    expected = torch.cat([v.pixel_values for vs in each for v in vs])
    assert torch.equal(batch["pixel_values"], expected)
    for _t, h, w in grids[:2]:
        assert h * w * 64 <= max(processor.min_pixels, processor.max_pixels // 2)
    assert int((batch["input_ids"] == C.VISUAL_ATOM_ID).sum()) == sum(t * h * w // 4 for t, h, w in grids)


def test_video_sample(processor):
    vid = Sample("v", [Message("user", [Part("video", media="v.mp4"), text("What happens?")]), Message("assistant", [text("A dot moves.")])])
    frames = [noise_image(64, 48, i) for i in range(8)]
    batch = Ovis2_5Inputs(processor)([vid], images=[[frames]])
    t, h, w = batch["grid_thws"][0].tolist()
    assert t == 8
    ids = batch["input_ids"][0]
    assert (ids == C.VIDEO_START_ID).sum() == 1 and (ids == C.VIDEO_END_ID).sum() == 1
    assert (ids == C.VISUAL_ATOM_ID).sum() == t * h * w // 4


def test_truncation_never_cuts_a_visual_span(processor):
    build = Ovis2_5Inputs(processor)
    s = Sample("x", [Message("user", [text("Look"), image("a"), image("b")]), Message("assistant", [text("ok")])])
    enc = build.encode(s, [noise_image(64, 64), noise_image(64, 64)])
    ids = enc.input_ids
    second_start = ids.index(C.IMAGE_START_ID, ids.index(C.IMAGE_END_ID))
    build.max_length = second_start + 3  # inside the second span
    cut = build.truncate(enc)
    assert cut.input_ids == ids[:second_start]
    assert cut.labels == enc.labels[:second_start]
    assert len(cut.visuals) == 1
    batch = build.collate([cut])
    assert batch["grid_thws"].shape[0] == 1
    assert int((batch["input_ids"] == C.VISUAL_ATOM_ID).sum()) == cut.visuals[0].num_atoms


def test_select_rows_keeps_each_rows_pixels(processor):
    build = Ovis2_5Inputs(processor)
    s1 = Sample("1", [Message("user", [image("a"), image("b"), text("x")])])
    s2 = Sample("2", [Message("user", [text("no image")])])
    s3 = Sample("3", [Message("user", [image("c"), text("y")])])
    imgs = [[noise_image(64, 64, 1), noise_image(32, 64, 2)], [], [noise_image(48, 48, 3)]]
    full = build([s1, s2, s3], images=imgs, for_generation=True)
    sub = select_rows(full, [2, 1])
    ref = build([s3, s2], images=[imgs[2], imgs[1]], for_generation=True)
    assert torch.equal(sub["pixel_values"], ref["pixel_values"])
    assert torch.equal(sub["grid_thws"], ref["grid_thws"])
    assert "pixel_values" not in select_rows(full, [1])


def test_loads_media_from_image_roots_and_rejects_escapes(processor, tmp_path):
    noise_image(64, 64).save(tmp_path / "a.png")
    s = Sample("m", [Message("user", [image("a.png"), text("?")]), Message("assistant", [text("ok")])])
    batch = Ovis2_5Inputs(processor, image_roots=[tmp_path])([{"sample": s.to_json()}])
    assert batch["grid_thws"].tolist() == [[1, 8, 8]]
    bad = Sample("m", [Message("user", [image("../outside.png"), text("?")])])
    with pytest.raises(MediaError, match="outside"):
        Ovis2_5Inputs(processor, image_roots=[tmp_path])([bad])


def test_wrong_number_of_images_is_named(processor):
    s = Sample("n", [Message("user", [image("a"), text("?")])])
    with pytest.raises(ValueError, match="sample n: 1 image parts but 0 images given"):
        Ovis2_5Inputs(processor)([s], images=[[]])


def test_tool_response_crop_is_made_from_the_original(processor, tmp_path):
    from PIL import Image

    img = Image.new("RGB", (64, 64), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 32, 32))
    img.save(tmp_path / "a.png")
    s = Sample(
        "crop",
        [
            Message("user", [image("a.png"), text("Zoom?")]),
            Message("assistant", [Part("tool_call", tool="crop", box=Box(0, 0, 32, 32))]),
            Message("tool", [Part("tool_response", source="a.png", box=Box(0, 0, 32, 32))]),
            Message("assistant", [text("Red.")]),
        ],
    )
    batch = Ovis2_5Inputs(processor, image_roots=[tmp_path])([s])
    grids = batch["grid_thws"].tolist()
    # Original (64 px) and crop (32 px) share one budget of max(min, max // 2) = 2048 pixels.
    assert grids == [[1, 4, 4], [1, 4, 4]]
    crop_rows = batch["pixel_values"][16:].view(-1, 3, 8, 8)
    assert torch.allclose(crop_rows[:, 0], torch.ones(1)) and torch.allclose(crop_rows[:, 2], -torch.ones(1))
    text_ = processor.tokenizer.decode([t for t in batch["input_ids"][0].tolist() if t >= 0])
    assert '{"bbox_2d": [0.000, 0.000, 0.500, 0.500]}}</tool_call>' in text_, text_


def test_video_file_is_read_with_num_frames(processor, tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    with av.open(str(tmp_path / "v.mp4"), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    s = Sample("v", [Message("user", [Part("video", media="v.mp4"), text("?")]), Message("assistant", [text("ok")])])
    batch = Ovis2_5Inputs(processor, image_roots=[tmp_path], num_frames=6)([s])
    assert batch["grid_thws"].tolist() == [[6, 6, 8]]


def test_coordinates_are_single_tokens_in_the_tiny_tokenizer(processor):
    tok = processor.tokenizer
    ids = tok.encode("<box>(0.125,0.500),(0.999,0.000)</box>", add_special_tokens=False)
    pieces = [tok.decode([i]) for i in ids]
    assert {"0.125", "0.500", "0.999", "0.000"} <= set(pieces)


def test_tool_call_box_normalised_by_the_latest_image(processor):
    s = Sample(
        "l",
        [
            Message("user", [image("a"), text("One.")]),
            Message("assistant", [text("ok")]),
            Message("user", [image("b"), text("Two.")]),
            Message("assistant", [Part("tool_call", tool="crop", box=Box(0, 0, 16, 16))]),
        ],
    )
    batch = Ovis2_5Inputs(processor)([s], images=[[noise_image(64, 64), noise_image(32, 32)]])
    text_ = processor.tokenizer.decode([t for t in batch["input_ids"][0].tolist() if t >= 0])
    assert "[0.000, 0.000, 0.500, 0.500]" in text_  # 16 px of the 32 px second image
