"""Chat format and labels: thinking on/off, learned spans, tool calls and responses."""

from __future__ import annotations

from vlm_train.data.sample import Box, Message, Part, Sample, image, text
from vlm_train.models.ovis2_5.template import CHAT_TEMPLATE, render


def _floats(box, media, last_image):
    return [f"{v / 100:.3f}" for v in box.as_list()]


def _text(segments, learned=None):
    return "".join(
        s.text if s.kind == "text" else f"<{s.kind}>"
        for s in segments
        if learned is None or (s.kind == "text" and s.learn == learned)
    )


def _multi_turn_thinking() -> Sample:
    return Sample(
        "t",
        [
            Message("system", [text("You are helpful.")]),
            Message("user", [image("a.png"), text("What shape?")]),
            Message("assistant", [text("<think>\nIt is round.\n</think>\n\nA circle.")]),
            Message("user", [text("Colour?")]),
            Message("assistant", [text("Red.")]),
        ],
    )


def test_training_render_and_learned_spans():
    segs = render(_multi_turn_thinking(), _floats)
    assert _text(segs) == (
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat shape?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nIt is round.\n</think>\n\nA circle.<|im_end|>\n"
        "<|im_start|>user\nColour?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nRed.<|im_end|>"  # final "\n" dropped
    )
    learned = [s.text for s in segs if s.kind == "text" and s.learn]
    # The data's own think block is learned; the auto-inserted empty one is not.
    assert learned == ["<think>\nIt is round.\n</think>\n\nA circle.<|im_end|>", "Red.<|im_end|>"]
    assert all(not s.learn for s in segs if s.kind != "text")


def test_generation_prompt_thinking_on_and_off():
    sample = _multi_turn_thinking()
    off = _text(render(sample, _floats, for_generation=True, enable_thinking=False))
    on = _text(render(sample, _floats, for_generation=True, enable_thinking=True))
    # History keeps only the text after </think>; the last assistant turn is the target.
    assert "It is round" not in off and "A circle.<|im_end|>" in off and "Red." not in off
    assert off.endswith("<|im_start|>user\nColour?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")


def test_jinja_template_matches_renderer_for_generation(processor):
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA circle."},
        {"role": "user", "content": [{"type": "text", "text": "Colour? <image>"}]},
    ]
    sample = Sample(
        "j",
        [
            Message("user", [image("a.png"), text("What shape?")]),
            Message("assistant", [text("<think>\nhmm\n</think>\n\nA circle.")]),
            Message("user", [text("Colour? <image>")]),
        ],
    )
    for thinking in (False, True):
        jinja = processor.tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
        assert jinja == _text(render(sample, _floats, for_generation=True, enable_thinking=thinking))
    assert CHAT_TEMPLATE == processor.tokenizer.chat_template


def test_tool_call_and_tool_response():
    sample = Sample(
        "tool",
        [
            Message("user", [image("a.png"), text("Find the star.")]),
            Message("assistant", [text("Let me zoom."), Part("tool_call", tool="crop", box=Box(10, 20, 30, 40))]),
            Message("tool", [Part("tool_response", media="crop.png")]),
            Message("assistant", [text("<ref>star</ref><box>(0.1,0.2),(0.3,0.4)</box>")]),
        ],
    )
    segs = render(sample, _floats)
    full = _text(segs)
    call = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [0.100, 0.200, 0.300, 0.400]}}</tool_call>'
    assert f"<|im_start|>assistant\n<think>\n\n</think>\n\nLet me zoom.\n{call}<|im_end|>\n" in full
    assert "<|im_start|>user\n<tool_response>\n<image>\n</tool_response><|im_end|>\n" in full
    learned = _text(segs, learned=True)
    assert call in learned and "tool_response" not in learned
    assert [s.visual for s in segs if s.kind == "image"] == [0, 1]


def test_fragment_ending_in_a_tool_turn_keeps_its_newline():
    turn = Sample("f", [Message("tool", [Part("tool_response", media="<crop>")])])
    assert _text(render(turn, _floats)) == "<|im_start|>user\n<tool_response>\n<image>\n</tool_response><|im_end|>\n"


def test_generation_prompt_stops_before_the_final_answer_run():
    sample = Sample(
        "p",
        [
            Message("user", [image("a.png"), text("Find the star.")]),
            Message("assistant", [Part("tool_call", tool="crop", box=Box(10, 20, 30, 40))]),
            Message("tool", [Part("tool_response", media="crop.png")]),
            Message("assistant", [text("<box>(0.1,0.2),(0.3,0.4)</box>")]),
        ],
    )
    prompt = _text(render(sample, _floats, for_generation=True))
    assert prompt == (
        "<|im_start|>user\n<image>\nFind the star.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_tool_call_box_is_relative_to_the_latest_image():
    seen = []

    def floats(box, media, last_image):
        seen.append((media, last_image))
        return ["0.000"] * 4

    sample = Sample(
        "l",
        [
            Message("user", [image("a.png"), text("One.")]),
            Message("assistant", [text("ok")]),
            Message("user", [image("b.png"), text("Two.")]),
            Message("assistant", [Part("tool_call", tool="crop", box=Box(1, 2, 3, 4))]),
            Message("tool", [Part("tool_response", media="crop.png")]),
            Message("assistant", [Part("tool_call", tool="crop", box=Box(1, 2, 3, 4), media="a.png")]),
        ],
    )
    render(sample, floats)
    # The crop (visual 2) is not an image part: the latest image stays b.png (visual 1).
    assert seen == [(None, 1), ("a.png", 1)]
