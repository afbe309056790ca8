"""The family contract, checked for every registered family (a new family is tested by
registering it in vlm_train/models/__init__.py)."""

from __future__ import annotations

import dataclasses

import pytest

from vlm_train.config import ConfigError, load_config
from vlm_train.data.coords import CONVENTIONS, CoordConvention
from vlm_train.data.sample import Box
from vlm_train.models import FAMILIES, get_family
from vlm_train.models.base import Family, InputsConfig
from vlm_train.models.chat import ChatFormat

NAMES = sorted(FAMILIES)
BOXES = [Box(0, 0, 640, 480), Box(64.4, 48.2, 320.7, 240.1), Box(10, 300, 11, 479)]


@pytest.fixture(params=NAMES)
def family(request) -> Family:
    return get_family(request.param)


def test_family_is_frozen_and_typed(family):
    assert isinstance(family, Family) and family.name in FAMILIES
    assert isinstance(family.coords, CoordConvention) and family.coords.name in CONVENTIONS
    assert isinstance(family.chat, ChatFormat)
    with pytest.raises(dataclasses.FrozenInstanceError):
        family.name = "x"  # type: ignore[misc]
    assert not hasattr(family, "hooks")
    assert set(family.module_groups) == {"vision", "projector", "llm"} and family.lora_targets


@pytest.mark.parametrize("box", BOXES)
def test_box_text_round_trip_within_the_conventions_rounding(family, box):
    w, h = 640, 480
    text = family.box_to_text(box, w, h)
    (back,) = family.text_to_boxes(text, w, h)
    # One step of the convention's grid (1/1000 or 1/1000 at 3 decimals), plus clamping at the edge.
    tol = max(w, h) / 1000 + 1e-6
    for a, b in zip(back.as_list(), box.as_list(), strict=True):
        assert abs(a - b) <= tol
    # The arithmetic is the convention's: the text carries exactly the convention's values.
    for v in family.coords.to_text_values(box, w, h):
        assert v in text


def test_coords_values_convert_back_to_pixels(family):
    box = Box(64, 48, 320, 240)
    vals = family.coords.to_values(box, 640, 480)
    assert family.coords.to_box(vals, 640, 480) == box
    assert family.coords.in_range(vals, 640, 480)


def test_grounding_prompt_names_the_phrase(family):
    assert "a red car" in family.grounding_prompt("a red car")


@pytest.mark.parametrize("box", BOXES)
def test_grounding_answer_names_the_phrase_and_reads_back(family, box):
    """The answer SFT data teaches holds the phrase and exactly the box ``text_to_boxes`` and
    ``box_to_text`` agree on (the answer's box is the family's box syntax)."""
    w, h = 640, 480
    text = family.grounding_answer("the red car", box, w, h)
    assert "the red car" in text
    assert family.text_to_boxes(text, w, h) == family.text_to_boxes(family.box_to_text(box, w, h), w, h)


def test_chat_renders_tool_turns_and_headers(family):
    chat = family.chat
    call = chat.tool_call("crop", {"bbox_2d": [1, 2, 3, 4]})
    assert call.startswith(chat.tool_call_open) and call.endswith(chat.tool_call_close) and '"bbox_2d": [1, 2, 3, 4]' in call
    assert chat.assistant_header(True) == chat.header("assistant")
    assert chat.assistant_header(False).startswith(chat.header("assistant"))
    assert chat.turn("user", "hi") == chat.header("user") + "hi" + chat.turn_end + "\n"
    resp = chat.tool_response_open_text() + "x" + chat.tool_response_close_text()
    assert resp.startswith(chat.header("user")) and chat.tool_response_open in resp and resp.endswith(chat.turn_end + "\n")
    assert chat.think_close in chat.budget_stop_text
    assert chat.strip_completion("answer" + chat.turn_end + "junk") == "answer"


def test_tool_call_rendering_matches_the_input_builder(family, tmp_path):
    """The ChatFormat's texts are the ones the family's builder tokenises (one home)."""
    from vlm_train.data.sample import Message, Part, Sample

    path = family.tiny(tmp_path / "tiny")
    from vlm_train.config import ModelConfig

    _, proc = family.load(ModelConfig(family=family.name, path=str(path)))
    build = family.make_inputs(proc, InputsConfig())
    s = Sample("s", [Message("user", [Part("text", text="hello")]), Message("assistant", [Part("text", text="x")])])
    ids = build([s], for_generation=True)["input_ids"][0]
    text = proc.tokenizer.decode([int(i) for i in ids if i >= 0 and i != proc.tokenizer.pad_token_id])
    assert text.endswith(family.chat.assistant_header(False))
    assert family.chat.turn("user", "hello") in text


def test_inputs_config_from_job_is_the_one_translation():
    cfg = load_config("configs/debug/internvl_tiny_sft.yaml", ["data.max_image_pixels=1234", "tools.min_crop_size=7"])
    ic = InputsConfig.from_job(cfg, ["/a"], 99, enable_thinking=True)
    assert (ic.image_roots, ic.max_length, ic.max_image_pixels, ic.min_crop_size, ic.enable_thinking) == (
        ("/a",), 99, 1234, 7, True
    )
    assert InputsConfig.from_job(None) == InputsConfig()


def test_config_validates_family_against_the_registry():
    with pytest.raises(ConfigError, match=r"model\.family.*unknown model family 'llava'"):
        load_config("configs/debug/internvl_tiny_sft.yaml", ["model.family=llava"])


def test_rewards_read_the_family_syntax_in_its_convention(family):
    """The reward parser knows no family: it asks every registered one (``find_boxes``). A
    family whose syntax is the generic JSON ``bbox_2d`` form (``find_boxes`` claims nothing) is
    read in the row's convention, which GRPO rows set to the family's own."""
    from vlm_train.rewards.parse import parse_completion

    box = Box(64, 48, 320, 240)
    answer = family.box_to_text(box, 640, 480)
    own = family.find_boxes(answer)
    row_coords = "pixels" if own else family.coords.name
    p = parse_completion("<ref>cat</ref>" + answer, (640, 480), row_coords)
    (got,) = p.answer_boxes
    assert got.convention == family.coords.name
    assert got.box.as_list() == pytest.approx(box.as_list(), abs=1.0)
    if own:  # the family's own syntax: read whatever the row says, labelled by <ref>
        assert got.label == "cat" and [f.form for f in own] == [got.form]
    else:
        assert got.form == "json"
        # Registering the family changed nothing for other rows: the JSON form follows them.
        (other,) = parse_completion(answer, (640, 480), "pixels").answer_boxes
        assert other.convention == "pixels"
