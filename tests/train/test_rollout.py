"""The crop tool runs live inside rollouts: the continuation sees the crop of the ORIGINAL image
at the called box, and the tool-turn tokens are masked out of the policy loss."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm_train.config import ModelConfig, ToolsConfig
from vlm_train.data.sample import Box, GroundingTarget, Message, Sample, image, text
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.tools.crop import crop
from vlm_train.train.rollout import CropToolRollout, merge_mm


def processed(proc, img):
    """The family's own preprocessing of one image (independent of the input builder)."""
    if hasattr(proc, "image_processor"):  # InternVL: dynamic tiles
        return proc.image_processor(images=[img], crop_to_patches=True, return_tensors="pt")["pixel_values"]
    return torch.as_tensor(proc.preprocess_image(img).pixel_values)  # Ovis2.5: patch rows


class Scripted(torch.nn.Module):
    """Wraps a real model: ``generate`` replays scripted token sequences and records its inputs."""

    def __init__(self, model, script: list[list[int]]):
        super().__init__()
        self.model, self.script, self.calls = model, list(script), []

    def generate(self, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, **kw):
        self.calls.append({"input_ids": input_ids.clone(), **{k: v for k, v in kw.items() if torch.is_tensor(v)}})
        new = self.script.pop(0)[:max_new_tokens]
        tail = torch.tensor([new] * input_ids.size(0))
        return torch.cat([input_ids, tail], dim=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    im = Image.new("RGB", (80, 48), (0, 0, 0))
    for x in range(40, 80):  # right half striped, so a crop is distinguishable from the whole
        for y in range(0, 48, 2):
            im.putpixel((x, y), (255, 0, 0))
    im.save(root / "scene.png")
    return root


@pytest.mark.parametrize("family_name", ["internvl", "ovis2_5"])
def test_crop_reaches_model_and_tool_tokens_carry_no_loss(family_name, setup, tmp_path):
    fam = get_family(family_name)
    path = fam.tiny(tmp_path / "tiny")
    model, proc = fam.load(ModelConfig(family=family_name, path=str(path)), dtype=torch.float32)
    builder = fam.make_inputs(proc, InputsConfig(image_roots=tuple([str(setup)])))
    rollout = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=2), [str(setup)])
    tok = proc.tokenizer
    # Pixels, exact in every convention (so the crop the model sees is the box's); written in
    # the family's own convention and chat format below.
    box = Box(40, 0, 76, 24)
    call = fam.chat.tool_call("crop", {"bbox_2d": fam.coords.to_values(box, 80, 48)})
    answer = "<ref>the red stripes</ref>" + fam.box_to_text(box, 80, 48) + fam.chat.turn_end
    script = [tok(call, add_special_tokens=False).input_ids, tok(answer, add_special_tokens=False).input_ids]
    scripted = Scripted(model, script)
    sample = Sample("s", [Message("user", [image("scene.png"), text("Where are the red stripes?")]),
                          Message("assistant", [text("x")])], image_sizes=[(80, 48)],
                    targets=[GroundingTarget("the red stripes", box)])
    row = rollout.start(sample)
    rollout.generate(scripted, [row], {"do_sample": False}, max_completion=200)

    assert row.calls == 1 and len(scripted.calls) == 2 and row.done
    # The continuation's pixel input ends with the processed crop of the original image.
    original = Image.open(setup / "scene.png").convert("RGB")
    expected = processed(proc, crop(original, box))
    cont = scripted.calls[1]["pixel_values"]
    first = processed(proc, original)
    assert torch.equal(cont[: first.shape[0]], first.to(cont.dtype))
    assert torch.equal(cont[first.shape[0]:], expected.to(cont.dtype))
    # The crop is not the whole image (else the check above could not tell them apart).
    assert expected.shape != first.shape or not torch.equal(expected, first)
    # Mask: generated call and answer learned (1), the whole tool turn not (0).
    gen1, gen2 = len(script[0]), len(script[1])
    turn = len(row.completion_ids) - gen1 - gen2
    assert row.mask == [1] * gen1 + [0] * turn + [1] * gen2
    turn_text = tok.decode([t for t in row.completion_ids[gen1:gen1 + turn] if t >= 0])  # Ovis2.5 atoms are negative
    assert "<tool_response>" in turn_text and "<|im_start|>assistant\n" in turn_text.split("</tool_response>")[-1]
    # The row's ids and pixels make a valid forward of the real model (placeholders == image features).
    mm = merge_mm(row.mm)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([row.ids]), attention_mask=torch.ones(1, len(row.ids), dtype=torch.long), **mm)
    assert out.logits.shape[1] == len(row.ids)
    # Reward text excludes the tool turn.
    assert row.text[0] == call and row.text[1].startswith("<ref>the red stripes</ref>")


def internvl_rollout(setup, tmp_path, tools: ToolsConfig):
    """A tiny InternVL model, its processor, and a rollout over the scene in ``setup``."""
    fam = get_family("internvl")
    path = fam.tiny(tmp_path / "tiny")
    model, proc = fam.load(ModelConfig(path=str(path)), dtype=torch.float32)
    builder = fam.make_inputs(proc, InputsConfig(image_roots=tuple([str(setup)])))
    return model, proc, CropToolRollout(fam, proc, builder, tools, [str(setup)])


def test_rollout_stops_at_max_calls(setup, tmp_path):
    model, proc, rollout = internvl_rollout(setup, tmp_path, ToolsConfig(max_calls=1))
    call = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [0, 0, 500, 500]}}</tool_call>'
    ids = proc.tokenizer(call, add_special_tokens=False).input_ids
    scripted = Scripted(model, [ids, ids, ids])
    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    row = rollout.start(sample)
    rollout.generate(scripted, [row], {}, max_completion=500)
    assert row.calls == 1 and len(scripted.calls) == 2  # the second call is not executed


def test_the_completion_budget_counts_what_the_policy_writes_not_the_crop_turn(setup, tmp_path):
    # A budget of exactly the call plus the answer: counted in, the crop's turn (its image tokens)
    # would end the rollout before the answer, and no cropping rollout could earn the IoU reward.
    model, proc, rollout = internvl_rollout(setup, tmp_path, ToolsConfig(max_calls=1))
    tok = proc.tokenizer
    call = tok('<tool_call>{"name": "crop", "arguments": {"bbox_2d": [500, 0, 950, 500]}}</tool_call>',
               add_special_tokens=False).input_ids
    answer = tok("<ref>the red stripes</ref><box>[[500, 0, 950, 500]]</box><|im_end|>", add_special_tokens=False).input_ids
    scripted = Scripted(model, [call, answer])
    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    row = rollout.start(sample)
    rollout.generate(scripted, [row], {"do_sample": False}, max_completion=len(call) + len(answer))
    turn = len(row.completion_ids) - len(call) - len(answer)
    assert row.calls == 1 and turn > 16  # the crop's 16 image tokens and the turn's framing
    assert row.completion_ids[-len(answer):] == answer and row.written == len(call) + len(answer)
    assert row.done and len(scripted.calls) == 2
    # max_total (inference: the model's context) still bounds every token, the turn's included.
    total = len(call) + turn + 5
    row = rollout.start(sample)
    rollout.generate(Scripted(model, [call, answer]), [row], {"do_sample": False}, 500, max_total=total)
    assert row.done and row.calls == 1 and len(row.completion_ids) == total
    assert row.completion_ids[-5:] == answer[:5]


def test_a_row_that_generates_the_pad_token_ends(setup, tmp_path):
    # An untrained policy (seen: a tiny model's base evaluation, greedy) can choose the pad token.
    # The row must end there, not be sent back: greedy, it would choose pad again, forever.
    model, proc, rollout = internvl_rollout(setup, tmp_path, ToolsConfig(max_calls=1))
    pad = proc.tokenizer.pad_token_id
    some = proc.tokenizer("the box", add_special_tokens=False).input_ids
    assert pad not in (rollout.im_end, rollout.call_end)  # else pad would be a stop token already
    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    for first in ([pad, pad, pad], [*some, pad, pad]):
        scripted = Scripted(model, [first] * 3)
        row = rollout.start(sample)
        rollout.generate(scripted, [row], {"do_sample": False}, max_completion=64)
        assert row.done and len(scripted.calls) == 1, len(scripted.calls)
        assert row.completion_ids == first[: first.index(pad)] and row.calls == 0


def test_thinking_budget_in_rollouts(setup, tmp_path):
    """Past the budget without </think>, the official text is appended (masked) and generation
    continues; a rollout that closes </think> in time gets no insertion."""

    model, proc, rollout = internvl_rollout(setup, tmp_path, ToolsConfig(max_calls=1, thinking_budget=6))
    fam, tok = rollout.family, proc.tokenizer
    long_think = tok("<think> a b c d e f g h i j k l", add_special_tokens=False).input_ids
    answer = tok("the answer<|im_end|>", add_special_tokens=False).input_ids
    assert len(long_think) > 6
    scripted = Scripted(model, [long_think, answer])
    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    row = rollout.start(sample)
    rollout.generate(scripted, [row], {}, max_completion=200)
    forced = tok(fam.chat.budget_stop_text, add_special_tokens=False).input_ids
    assert row.completion_ids == long_think[:6] + forced + answer  # phase 1 stopped at the budget
    assert row.mask == [1] * 6 + [0] * len(forced) + [1] * len(answer)
    assert fam.chat.budget_stop_text in "".join(row.text)

    closed = tok("<think> a </think> done<|im_end|>", add_special_tokens=False).input_ids
    assert len(closed) <= 6 + 3
    scripted = Scripted(model, [closed[:6], closed[6:]])
    row = rollout.start(sample)
    rollout.generate(scripted, [row], {}, max_completion=200)
    assert row.completion_ids == closed and all(row.mask)


def test_rollout_crops_honour_max_image_pixels(setup, tmp_path):
    """The original a rollout crops from is loaded under data.max_image_pixels, so no crop
    (nor the image itself) exceeds it."""
    from vlm_train.data.media import MediaError

    fam = get_family("internvl")
    path = fam.tiny(tmp_path / "tiny")
    _, proc = fam.load(ModelConfig(path=str(path)), dtype=torch.float32)
    builder = fam.make_inputs(proc, InputsConfig(image_roots=(str(setup),)))
    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    small = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=1), [str(setup)], max_pixels=80 * 48 - 1)
    with pytest.raises(MediaError, match="over the 3839-pixel cap"):
        small.start(sample)
    fits = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=1), [str(setup)], max_pixels=80 * 48)
    row = fits.start(sample)
    _, _, crop_image = fits.tool_turn(row, Box(0, 0, 80, 48))
    assert crop_image.width * crop_image.height <= 80 * 48


def test_lockstep_rank_joins_every_round_of_the_busiest_rank(setup, tmp_path, monkeypatch):
    """Under ZeRO-3 on several ranks every generate is a collective: a rank whose rows finished
    after one call keeps joining the rounds another rank still runs (here two more: its rows
    crop twice), with throwaway synced calls, and its own rows are untouched by them."""
    import vlm_train.train.rollout as rollout_mod

    fam = get_family("internvl")
    path = fam.tiny(tmp_path / "tiny")
    model, proc = fam.load(ModelConfig(path=str(path)), dtype=torch.float32)
    builder = fam.make_inputs(proc, InputsConfig(image_roots=(str(setup),)))
    rollout = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=2), [str(setup)])
    answer = proc.tokenizer("done<|im_end|>", add_special_tokens=False).input_ids
    other_rounds = iter([True, True, True, False])  # the other rank: three rounds, then done
    flags = []

    def any_rank(mine, device):
        flags.append(mine)
        return bool(next(other_rounds)) or mine

    monkeypatch.setattr(rollout_mod, "in_lockstep", lambda: True)
    monkeypatch.setattr(rollout_mod, "any_rank", any_rank)
    scripted = Scripted(model, [answer, [0], [0]])
    recorded = []
    plain_generate = scripted.generate

    def generate(input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, **kw):
        recorded.append((max_new_tokens, kw.get("synced_gpus")))
        return plain_generate(input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, **kw)

    scripted.generate = generate
    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    row = rollout.start(sample)
    assert rollout.generate(scripted, [row], {}, max_completion=50) == 3
    assert flags == [True, False, False, False]  # one all-reduce per round, and the closing one
    assert recorded[0][1] is True and recorded[1:] == [(1, True), (1, True)]
    assert row.done and row.completion_ids == answer and row.mask == [1] * len(answer)


def test_rows_compare_by_identity(setup):
    # Rollout bookkeeping asks "is this row still active" (``in`` on a list of rows). With field-wise
    # equality, two rows holding image tensors compared their tensors and raised "Boolean value of
    # Tensor with more than one value is ambiguous" once a row hit max_completion while another went on.
    from vlm_train.train.rollout import Row

    sample = Sample("s", [Message("user", [image("scene.png"), text("q")])], image_sizes=[(80, 48)])
    a, b = (Row(sample, [1, 2], [{"pixel_values": torch.zeros(2, 3)}], None) for _ in range(2))
    assert a != b and a in [a] and b not in [a]
