"""Box and crop-call parsing: forms, conventions, flags, separation, totality, the B8 protocol."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlm_train.data.sample import Box
from vlm_train.rewards.parse import (
    answer_span,
    parse_completion,
    parse_message_tool_call,
    parse_rollout,
    refcoco_protocol_box,
)

SIZE = (1000.0, 500.0)


def boxes(parsed):
    return [b.box.as_list() for b in parsed.answer_boxes]


def test_internvl_several_boxes_with_label_and_conversion():
    p = parse_completion("<ref>two cats</ref><box>[[0, 0, 500, 1000], [100.5,200,300,400]]</box>", SIZE)
    # x * 1000 / 1000, y * 500 / 1000
    assert boxes(p) == [[0, 0, 500, 500], [100.5, 100, 300, 200]]
    assert [b.label for b in p.answer_boxes] == ["two cats", "two cats"]
    assert {b.form for b in p.answer_boxes} == {"quad_box"} and p.tool_calls == []


def test_ovis_box_and_point():
    p = parse_completion("<ref>dog</ref><box>(0.25,0.5),(0.75,0.999)</box> and <point>(0.5, 0.2)</point>", SIZE)
    assert boxes(p) == [pytest.approx([250, 250, 750, 499.5])]
    assert p.answer_boxes[0].label == "dog" and p.answer_boxes[0].form == "pair_box"
    (pt,) = p.answer_points
    assert pt.is_point and pt.box.as_list() == [500, 100, 500, 100] and not pt.valid
    # Several results, as the model card writes them.
    many = parse_completion("[<box>(0.1,0.2),(0.3,0.4)</box>,<box>(0.5, 0.5), (0.6, 0.7)</box>]", SIZE)
    assert boxes(many) == [pytest.approx([100, 100, 300, 200]), pytest.approx([500, 250, 600, 350])]


@pytest.mark.parametrize(
    ("coords", "raw", "expected"),
    [
        ("1000", "[100, 200, 300, 400]", [100, 100, 300, 200]),
        ("unit", "[0.1, 0.2, 0.3, 0.4]", [100, 100, 300, 200]),
        ("pixels", "[100, 200, 300, 400]", [100, 200, 300, 400]),
    ],
)
def test_json_bbox_follows_family_convention(coords, raw, expected):
    p = parse_completion(f'```json\n[{{"bbox_2d": {raw}, "label": "cat"}}]\n```', SIZE, coords)
    assert boxes(p) == [pytest.approx(expected)]
    assert p.answer_boxes[0].convention == coords


def test_swapped_and_clipped_are_reported_and_fixed():
    (b,) = parse_completion("<box>[[300,400,100,200]]</box>", SIZE).answer_boxes
    assert b.swapped and not b.clipped and not b.valid
    assert b.box.as_list() == [100, 100, 300, 200]
    (c,) = parse_completion("<box>[[-50,200,1200,2400]]</box>", SIZE).answer_boxes
    assert c.clipped and not c.swapped and not c.valid
    assert c.box.as_list() == [0, 100, 1000, 500]
    (ok,) = parse_completion("<box>[[0,0,1000,1000]]</box>", SIZE).answer_boxes
    assert ok.valid and ok.box.as_list() == [0, 0, 1000, 500]
    (ov,) = parse_completion("<box>(0.5,0.5),(1.2,0.9)</box>", SIZE).answer_boxes
    assert ov.clipped and ov.box.as_list() == [500, 250, 1000, 450]


def test_tool_call_forms_and_conventions():
    text = (
        '<think><tool_call>{"name": "crop", "arguments": {"bbox_2d": [100, 200, 300, 400], "label": "cat"}}</tool_call>'
        "<tool_call>[10, 20, 30, 40]</tool_call>"
        "<tool_call>Crop [1,2,3,4]</tool_call>"
        "<tool_call>Crop the red car [5.5, 6, 7, 8]</tool_call>"
        "{Crop person [0.00, 141.43, 79.23, 480.00]}"
        '<tool_call>{"name": "crop", "arguments": "{\\"bbox_2d\\": [0, 0, 10, 10]}"}</tool_call>'
        "</think>done"
    )
    p = parse_completion(text, SIZE, "1000")
    assert [c.form for c in p.tool_calls] == [
        "tool_json",
        "tool_list",
        "tool_crop",
        "tool_crop",
        "crop_brace",
        "tool_json",
    ]
    assert all(c.well_formed and c.name == "crop" for c in p.tool_calls)
    assert [b.box.as_list() for b in p.tool_boxes] == [
        [100, 100, 300, 200],  # JSON: InternVL 0-1000
        [10, 20, 30, 40],  # the original forms are pixels
        [1, 2, 3, 4],
        [5.5, 6, 7, 8],
        [0, 141.43, 79.23, 480],
        [0, 0, 10, 5],  # arguments as a JSON string (OpenAI style)
    ]
    assert [b.label for b in p.tool_boxes] == ["cat", None, None, "the red car", "person", None]
    assert p.answer_boxes == [] and p.answer_text == "done"


@pytest.mark.parametrize(
    ("inner", "error"),
    [
        ('{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3]}}', "'bbox_2d' is not a list of 4 numbers"),
        ('{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, true]}}', "'bbox_2d' is not a list of 4 numbers"),
        ('{"name": "crop", "arguments": {"bbox_2d": ["1", 2, 3, 4]}}', "'bbox_2d' is not a list of 4 numbers"),
        ('{"name": "crop", "arguments": {"bbox_2d": [1e999, 2, 3, 4]}}', "'bbox_2d' has a non-finite value"),
        (
            '{"name": "crop", "arguments": {"bbox_2d": [' + "9" * 400 + ", 2, 3, 4]}}",
            "'bbox_2d' has a non-finite value",
        ),
        ('{"name": "crop", "arguments": [1, 2, 3, 4]}', "'arguments' is not an object"),
        ('{"name": "crop", "arguments": "{bad"}', "arguments are not valid JSON"),
        ('{"name": "rotate", "arguments": {"bbox_2d": [1, 2, 3, 4]}}', "unknown tool 'rotate'"),
        ('{"arguments": {"bbox_2d": [1, 2, 3, 4]}}', "tool call has no string 'name'"),
        ('{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, 4]}', "malformed JSON"),
        ("[1, 2, 3]", "unrecognised tool call"),
        ("Crop[1,2,3,4] extra", "unrecognised tool call"),
        ("Cropper [1,2,3,4]", "unrecognised tool call"),
        ("", "unrecognised tool call"),
    ],
)
def test_malformed_tool_calls_say_why(inner, error):
    (call,) = parse_completion(f"<tool_call>{inner}</tool_call>", SIZE, "1000").tool_calls
    assert not call.well_formed and call.box is None
    assert call.error == error


def test_unclosed_tool_call_is_malformed_and_hides_its_box_from_the_answer():
    p = parse_completion('<tool_call>{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, 4]}}', SIZE, "pixels")
    (call,) = p.tool_calls
    assert call.error == "unclosed <tool_call>"
    assert p.answer_boxes == []


def test_tool_boxes_never_become_answer_boxes():
    text = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, 4]}}</tool_call> {Crop a [5,6,7,8]}'
    p = parse_completion(text, SIZE, "pixels")
    assert len(p.tool_boxes) == 2 and p.answer_boxes == []
    # Without the masking the bare-list fallback would read [5,6,7,8] as the answer.
    p2 = parse_completion(text + " final [10, 20, 30, 40]", SIZE, "pixels")
    assert boxes(p2) == [[10, 20, 30, 40]]


def test_well_formed_call_without_image_size_has_no_box():
    (call,) = parse_completion("<tool_call>[1,2,3,4]</tool_call>", None).tool_calls
    assert call.well_formed and call.box is None
    assert parse_completion("<box>[[1,2,3,4]]</box>", None).answer_boxes == []


def test_structured_message_calls():
    good = {"type": "function", "function": {"name": "crop", "arguments": {"bbox_2d": [0.1, 0.2, 0.3, 0.4]}}}
    c = parse_message_tool_call(good, "unit", SIZE)
    assert c.well_formed and c.form == "message" and c.box.box.as_list() == pytest.approx([100, 100, 300, 200])
    assert parse_message_tool_call("crop", "unit", SIZE).error == "tool call is not an object"
    assert not parse_message_tool_call({"function": {"name": "crop"}}, "unit", SIZE).well_formed


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("plain", "plain"),
        ("<think>a</think> b ", " b "),
        ("<think>a</think>x<answer>y</answer>z", "y"),
        ("<think>a", ""),
        ("<answer>unclosed", "<answer>unclosed"),
        ("<think>a</think><think>b</think>c", "c"),
    ],
)
def test_answer_span(text, answer):
    lo, hi = answer_span(text)
    assert text[lo:hi] == answer


def test_rollout_answer_from_last_turn_calls_from_all():
    texts = [
        "<think>see <tool_call>[1,2,3,4]</tool_call>",
        "hmm <box>[[0,0,10,10]]</box></think>",
        "<box>[[0,0,1000,1000]]</box>",
    ]
    p = parse_rollout(texts, SIZE, "1000")
    assert [b.box.as_list() for b in p.tool_boxes] == [[1, 2, 3, 4]]
    assert boxes(p) == [[0, 0, 1000, 500]]
    # A tag never pairs across turns: the first turn's opener is unclosed there.
    q = parse_rollout(["<tool_call>[1,2,", "3,4]</tool_call>"], SIZE)
    assert [c.error for c in q.tool_calls] == ["unclosed <tool_call>"]


# ---- the RefCOCO protocol (docs/models.md) -------------------------------------------------

B8_REGEX = re.compile(r"\[*\[(.*?),(.*?),(.*?),(.*?)\]\]*")


def b8_reference(text: str, w: float, h: float) -> list[float]:
    """The protocol as written, with the regex itself: a reference for short texts."""
    try:
        m = B8_REGEX.findall(text)
        vals = [float(v) for v in m[0]]
    except Exception:
        vals = [0.0, 0.0, 0.0, 0.0]
    if sum(vals) >= 4:
        vals = [v / 1000 for v in vals]
    return [vals[0] * w, vals[1] * h, vals[2] * w, vals[3] * h]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<ref>cat</ref><box>[[100, 200, 300, 400]]</box>", [100, 100, 300, 200]),
        ("[[0.1, 0.2, 0.3, 0.4]]", [100, 100, 300, 200]),  # sum < 4: already normalised
        ("no box", [0, 0, 0, 0]),
        ("[[a, 2, 3, 4]] [[100, 200, 300, 400]]", [0, 0, 0, 0]),  # first match does not read
        ("[1, 2\n, 3, 4] then\n[[100, 200, 300, 400]]", [100, 100, 300, 200]),  # no match across lines
        ("[[1200, 0, 1500, 100]]", [1200, 0, 1500, 50]),  # not clipped
    ],
)
def test_refcoco_protocol_box(text, expected):
    assert refcoco_protocol_box(text, *SIZE).as_list() == pytest.approx(expected)
    assert b8_reference(text, *SIZE) == pytest.approx(expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["[", "]", ",", "\n", " ", "1", "0.5", "-2", "a", "nan", "1e3", "[["]), max_size=25))
def test_refcoco_protocol_matches_the_regex(parts):
    text = "".join(parts)
    got = refcoco_protocol_box(text, *SIZE).as_list()
    ref = b8_reference(text, *SIZE)
    assert got == pytest.approx(ref, nan_ok=True)


def test_refcoco_protocol_is_linear():
    start = time.perf_counter()
    box = refcoco_protocol_box("[" + "1," * 50_000, *SIZE)
    assert box == Box(0, 0, 0, 0)
    assert time.perf_counter() - start < 1.0


# ---- totality ----------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    ["<box>", "</box>", "<point>", "</point>", "<ref>", "</ref>", "<think>", "</think>", "<answer>", "</answer>",
     "<tool_call>", "</tool_call>", "{Crop", " x ", "}", "[", "]", "(", ")", ",", "1", "0.5", "-3", "1e999", "2000",
     '"bbox_2d":', '{"name": "crop", "arguments": {"bbox_2d": ', "\n"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    text=st.lists(st.one_of(_FRAGMENTS, st.text(max_size=6)), max_size=50).map("".join),
    size=st.one_of(st.none(), st.tuples(st.floats(1, 5000), st.floats(1, 5000))),
    coords=st.sampled_from(["1000", "unit", "pixels"]),
)
def test_parser_is_total_and_boxes_are_canonical(text, size, coords):
    p = parse_completion(text, size, coords)
    for b in p.answer_boxes + p.answer_points + p.tool_boxes:
        w, h = size
        x1, y1, x2, y2 = b.box.as_list()
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
    assert all((c.error is None) == c.well_formed for c in p.tool_calls)
