"""Crop calls in SFT text (three syntaxes) become tool_call + tool_response messages."""

from __future__ import annotations

import json

import pytest

from vlm_train.data.errors import BAD_BOX, SampleProblem
from vlm_train.data.sample import Box
from vlm_train.data.toolcalls import MAX_JSON_DEPTH, find_tool_calls, join_tool_calls, shallow_json, split_tool_calls


@pytest.mark.parametrize(
    "call,label",
    [
        ("{Crop person [0.00, 141.43, 79.23, 480.00]}", "person"),
        ("<tool_call>[0.00, 141.43, 79.23, 480.00]</tool_call>", ""),
        ("<tool_call>Crop person [0, 141.43, 79.23, 480]</tool_call>", "person"),
        ('<tool_call>{"name": "crop", "arguments": {"bbox_2d": [0, 141.43, 79.23, 480]}}</tool_call>', ""),
        ('{"name": "crop", "arguments": {"bbox_2d": [0, 141.43, 79.23, 480], "label": "person"}}', "person"),
    ],
)
def test_each_syntax_becomes_a_crop_call(call, label):
    text = f"<think>\nLook.\n{call}\nA jacket.\n</think>"
    msgs = split_tool_calls(text, "img.jpg", (640, 480))
    assert [m.role for m in msgs] == ["assistant", "tool", "assistant"]
    assert msgs[0].content[0].text == "<think>\nLook.\n"
    tc = msgs[0].content[-1]
    assert (tc.type, tc.tool, tc.label or "", tc.box, tc.text) == (
        "tool_call",
        "crop",
        label,
        Box(0, 141.43, 79.23, 480),
        call,
    )
    resp = msgs[1].content[0]
    assert (resp.type, resp.source, resp.box) == ("tool_response", "img.jpg", tc.box)
    assert msgs[2].content[0].text == "\nA jacket.\n</think>"
    assert join_tool_calls(msgs) == text


def test_json_calls_in_family_coordinates():
    text = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [100, 100, 500, 500]}}</tool_call>'
    assert split_tool_calls(text, "i", (640, 480), json_coords="1000")[0].content[-1].box == Box(64, 48, 320, 240)
    text = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [0.1, 0.1, 0.5, 0.5]}}</tool_call>'
    assert split_tool_calls(text, "i", (640, 480), json_coords="unit")[0].content[-1].box == Box(64, 48, 320, 240)
    with pytest.raises(SampleProblem, match="image size is unknown"):
        split_tool_calls(text, "i", None, json_coords="unit")


def test_several_calls_and_nested_forms():
    text = "a {Crop x [1, 2, 3, 4]} b <tool_call>{Crop y [5, 6, 7, 8]}</tool_call> c {Crop[0, 0, 2, 2]}"
    calls = find_tool_calls(text)
    assert [(c.label, c.values) for c in calls] == [("x", [1, 2, 3, 4]), ("y", [5, 6, 7, 8]), ("", [0, 0, 2, 2])]
    msgs = split_tool_calls(text, "i")
    assert [m.role for m in msgs] == ["assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant"]
    assert join_tool_calls(msgs) == text


def test_no_call_and_bad_calls():
    msgs = split_tool_calls("plain answer", None)
    assert len(msgs) == 1 and msgs[0].content[0].text == "plain answer"
    for bad, msg in [
        ("{Crop a [1, 2, b, 4]}", "non-numeric"),
        ("{Crop a [1, 2, 3]}", "4 numbers"),
        ("<tool_call>zoom in please</tool_call>", "cannot parse tool call"),
        ('<tool_call>{"name": "crop", "arguments": {}}</tool_call>', "no bbox_2d"),
        ("{Crop a [1, 2, 3, 4]", "malformed tool call at character 0"),
        ("text <tool_call>[1, 2, 3, 4]", "malformed tool call at character 5"),
    ]:
        with pytest.raises(SampleProblem, match=msg) as ei:
            split_tool_calls(bad, "i")
        assert ei.value.kind == BAD_BOX
    with pytest.raises(SampleProblem, match="needs an image"):
        split_tool_calls("{Crop a [1, 2, 3, 4]}", None)
    # another tool's JSON call is text, not a crop
    other = '{"name": "identify", "arguments": {}}'
    assert len(split_tool_calls(other, "i")) == 1


@pytest.mark.parametrize(
    "text", ["<tool_call>" + " " * 20_000, "{Crop" + " " * 20_000, "{ Crop x" + " " * 20_000 + "[1, 2"]
)
def test_scanning_is_linear_on_long_blank_runs(text):
    # The shared lexer once backtracked quadratically here (11 s at 2,000 blanks); the bound is
    # generous so that a loaded CI machine passes while a quadratic scan cannot.
    import time

    t0 = time.perf_counter()
    with pytest.raises(SampleProblem, match="malformed tool call"):
        split_tool_calls(text, "img.jpg", (640, 480))
    assert time.perf_counter() - t0 < 0.5


def test_rewards_and_data_share_one_lexer():
    from vlm_train.rewards import parse

    text = "<tool_call>Crop cat [1, 2, 3, 4]</tool_call> then {Crop dog [5, 6, 7, 8]}"
    data_calls = find_tool_calls(text)
    reward_calls = parse.parse_completion(text, (640, 480)).tool_calls
    assert [c.values for c in data_calls] == [list(c.box.raw) for c in reward_calls]
    assert [c.label for c in data_calls] == [c.box.label for c in reward_calls] == ["cat", "dog"]


def test_deep_json_is_refused_without_recursing():
    # 50,000 brackets make the C decoder hit the recursion limit (RecursionError, and finalizers
    # run by the GC at that depth fail as unraisable errors); the guard refuses before decoding.
    with pytest.raises(json.JSONDecodeError, match="nested deeper"):
        shallow_json('{"a": ' + "[" * 50_000)
    with pytest.raises(SampleProblem, match="cannot parse tool call"):
        find_tool_calls('<tool_call>{"name": "crop", "arguments": ' + "[" * 50_000 + "</tool_call>")
    # brackets inside strings do not count, and the depth limit itself is accepted
    assert shallow_json('{"name": "crop", "label": "' + "[{" * 100 + '", "arguments": {"bbox_2d": [1, 2, 3, 4]}}') == {
        "name": "crop",
        "label": "[{" * 100,
        "arguments": {"bbox_2d": [1, 2, 3, 4]},
    }
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert shallow_json(ok) == json.loads(ok)
    with pytest.raises(json.JSONDecodeError):
        shallow_json("[" + ok + "]")
