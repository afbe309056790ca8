"""Reward table: every reward's value for each completion, worked out by hand.

Shared context (unless a row overrides it): a 1000 x 500 image, InternVL coordinates (0-1000, so
an InternVL value maps to x px = v, y px = v / 2), target box T = (100, 100, 300, 200) px (area
20000), annotated regions cat = T and dog = (600, 300, 800, 400), gold answer "cat".

Often-used boxes, InternVL text -> pixels -> IoU with T:
  [[100,200,300,400]] -> (100,100,300,200) -> 1
  [[200,200,400,400]] -> (200,100,400,200) -> inter 100*100 / union (20000+20000-10000) = 1/3

Columns: iou, iou_hit (threshold 0.5), region, answer, format, box_valid.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlm_train.config_base import ConfigError
from vlm_train.rewards.functions import (
    RANGES,
    REWARDS,
    build_reward_funcs,
    choice_letter,
    normalize_answer,
)

NAMES = ("iou", "iou_hit", "region", "answer", "format", "box_valid")
CTX = {
    "image_size": [1000, 500],
    "target_box": [100, 100, 300, 200],
    "regions": [{"label": "cat", "box": [100, 100, 300, 200]}, {"label": "dog", "box": [600, 300, 800, 400]}],
    "answer": "cat",
    "coords": "1000",
}
GOOD = "<box>[[100,200,300,400]]</box>"
THIRD = 1 / 3
CALL_CAT = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [100, 200, 300, 400]}}</tool_call>'

# (id, completion, context overrides, [iou, iou_hit, region, answer, format, box_valid])
# fmt: off
TABLE = [
    # -- answer boxes ------------------------------------------------------------------------
    ("internvl_well_formed", f"<think>The cat is left.</think><ref>cat</ref>{GOOD}", {}, [1, 1, 0, 0, 1, 1]),
    # RefCOCO-style output without thinking: boxes score, format does not.
    ("internvl_no_think", f"<ref>cat</ref>{GOOD}", {}, [1, 1, 0, 0, 0, 1]),
    # The <box>(..),(..)</box> syntax is Ovis2.5's [0,1) whatever the coords column says.
    ("ovis_box", "<think>x</think><ref>cat</ref><box>(0.1,0.2),(0.3,0.4)</box>", {}, [1, 1, 0, 0, 1, 1]),
    ("ovis_box_third", "<think>x</think><box>(0.2,0.2),(0.4,0.4)</box>", {"coords": "unit"}, [THIRD, 0, 0, 0, 1, 1]),
    # A point is not a box: nothing to score, nothing to validate.
    ("ovis_point_only", "<think>x</think><point>(0.2,0.3)</point>", {}, [0, 0, 0, 0, 1, 0]),
    ("json_internvl", '<think>x</think>{"bbox_2d": [100, 200, 300, 400], "label": "cat"}', {}, [1, 1, 0, 0, 1, 1]),
    (
        "json_ovis",
        '<think>x</think>{"bbox_2d": [0.1, 0.2, 0.3, 0.4]}',
        {"coords": "unit"},
        [1, 1, 0, 0, 1, 1],
    ),
    ("json_pixels_no_think", '{"bbox_2d": [100, 100, 300, 200]}', {"coords": "pixels"}, [1, 1, 0, 0, 0, 1]),
    ("json_single_quotes", "<think>x</think>[{'bbox_2d': [100, 200, 300, 400], 'label': 'cat'}]", {}, [1, 1, 0, 0, 1, 1]),
    # Answer JSON is read leniently: the bbox_2d list is found although the object is broken.
    ("json_malformed_object", '<think>x</think>{"bbox_2d": [100, 200, 300, 400], "label": }', {}, [1, 1, 0, 0, 1, 1]),
    ("json_three_numbers", '<think>x</think>{"bbox_2d": [100, 200, 300]}', {}, [0, 0, 0, 0, 1, 0]),
    ("bare_list_in_answer", "<think>x</think><answer>[100, 200, 300, 400]</answer>", {}, [1, 1, 0, 0, 1, 1]),
    # (150, 100.25, 300, 200): area 150 * 99.75 = 14962.5 inside T -> 14962.5 / 20000.
    ("floats", "<box>[[150.0, 200.5, 300.0, 400.0]]</box>", {}, [0.748125, 1, 0, 0, 0, 1]),
    ("exponents", "<think>x</think><box>[[1e2, 2e2, 3e2, 4e2]]</box>", {}, [1, 1, 0, 0, 1, 1]),
    # (100,100,300,150): area 10000 inside T -> IoU exactly 0.5, a hit (>=).
    ("iou_exactly_half", "<think>x</think><box>[[100,200,300,300]]</box>", {}, [0.5, 1, 0, 0, 1, 1]),
    # Corners fixed for scoring, but the box is not valid as written.
    ("swapped_corners", "<think>x</think><box>[[300,400,100,200]]</box>", {}, [1, 1, 0, 0, 1, 0]),
    # x2 = 1300 clipped to 1000: (100,100,1000,200), area 90000 -> 20000 / 90000.
    ("outside_image", "<think>x</think><box>[[100,200,1300,400]]</box>", {}, [2 / 9, 0, 0, 0, 1, 0]),
    # x1 = -100 clipped to 0: (0,100,300,200), area 30000 -> 2/3.
    ("negative_coordinate", "<box>[[-100,200,300,400]]</box>", {}, [2 / 3, 1, 0, 0, 0, 0]),
    ("zero_area", "<think>x</think><box>[[100,200,100,400]]</box>", {}, [0, 0, 0, 0, 1, 0]),
    ("nested_brackets", "<think>x</think><box>[[[100,200,300,400]]]</box>", {}, [1, 1, 0, 0, 1, 1]),
    # The first box is the answer; both are valid.
    ("several_boxes", "<think>x</think><box>[[200,200,400,400],[100,200,300,400]]</box>", {}, [THIRD, 0, 0, 0, 1, 1]),
    # A box inside <think> is not an answer box (and not counted for validity).
    ("box_in_think_ignored", f"<think>maybe {GOOD}</think><box>[[200,200,400,400]]</box>", {}, [THIRD, 0, 0, 0, 1, 1]),
    ("think_never_closed", f"<think>the cat {GOOD}", {}, [0, 0, 0, 0, 0, 0]),
    ("huge_number", "<think>x</think><box>[[1e400,200,300,400]]</box>", {}, [0, 0, 0, 0, 1, 0]),
    ("fullwidth_digits", "<think>x</think><box>[[１００,２００,３００,４００]]</box>", {}, [0, 0, 0, 0, 1, 0]),
    ("unicode_text", f"<think>猫は左 🐱</think><ref>猫</ref>{GOOD}", {}, [1, 1, 0, 0, 1, 1]),
    ("no_image_size", f"<think>x</think>{GOOD}", {"image_size": None}, [0, 0, 0, 0, 1, 0]),
    ("no_target", f"<think>x</think>{GOOD}", {"target_box": None}, [0, 0, 0, 0, 1, 1]),
    # -- text answers and format ---------------------------------------------------------------
    ("empty", "", {}, [0, 0, 0, 0, 0, 0]),
    ("empty_answer", "<think>cat</think>   ", {}, [0, 0, 0, 0, 0, 0]),
    ("no_tags", "The cat is at the top left.", {}, [0, 0, 0, 0, 0, 0]),
    ("answer_exact", "<think>It is a cat.</think>The cat.", {}, [0, 0, 0, 1, 1, 0]),
    ("answer_tags", "<think>hm</think><answer> A Cat! </answer>", {}, [0, 0, 0, 1, 1, 0]),
    ("answer_fullwidth", "<think>x</think>ＣＡＴ", {"answer": "CAT"}, [0, 0, 0, 1, 1, 0]),
    ("answer_no_gold", "<think>x</think>cat", {"answer": None}, [0, 0, 0, 0, 1, 0]),
    ("two_answer_tags", "<think>x</think><answer>cat</answer><answer>dog</answer>", {}, [0, 0, 0, 1, 0, 0]),
    ("two_think_blocks", "<think>a</think><think>b</think>cat", {}, [0, 0, 0, 1, 0, 0]),
    ("text_before_think", "Sure! <think>a</think>cat", {}, [0, 0, 0, 1, 0, 0]),
    ("letter_said", "<think>options</think>The answer is B.", {"answer": "B"}, [0, 0, 0, 1, 1, 0]),
    ("letter_leading", "<think>x</think>C. the blue square", {"answer": "(C)"}, [0, 0, 0, 1, 1, 0]),
    ("letter_wrong", "<think>x</think>(A)", {"answer": "B"}, [0, 0, 0, 0, 1, 0]),
    # "A red cat" starts with an article, not a choice.
    ("letter_article_trap", "<think>x</think>A red cat", {"answer": "A"}, [0, 0, 0, 0, 1, 0]),
    # -- tool calls ------------------------------------------------------------------------------
    (
        "tool_json_then_box",
        f"<think>Look closer. {CALL_CAT} It is a cat.</think>{GOOD}",
        {},
        [1, 1, 1, 0, 1, 1],
    ),
    ("tool_json_no_regions", f"<think>{CALL_CAT}</think>{GOOD}", {"regions": None}, [1, 1, 0, 0, 1, 1]),
    # The call's bbox_2d is a tool box, never the answer; nothing follows </think>.
    ("tool_box_is_not_answer", f"<think>{CALL_CAT}</think>", {}, [0, 0, 1, 0, 0, 1]),
    (
        "tool_json_malformed",
        '<think>x <tool_call>{"name": "crop", "arguments": {"bbox_2d": [100, 200, 300, 400]}</tool_call></think>'
        + GOOD,
        {},
        [1, 1, -0.5, 0, 0, 0.5],
    ),
    (
        "tool_unknown_name",
        '<think><tool_call>{"name": "zoom", "arguments": {"bbox_2d": [100,200,300,400]}}</tool_call></think>' + GOOD,
        {},
        [1, 1, -0.5, 0, 0, 0.5],
    ),
    (
        "tool_nan",
        '<think><tool_call>{"name": "crop", "arguments": {"bbox_2d": [NaN, 0, 1, 1]}}</tool_call></think>cat',
        {},
        [0, 0, -0.5, 1, 0, 0],
    ),
    (
        "tool_unclosed",
        '<think>zoom <tool_call>{"name": "crop", "arguments": {"bbox_2d": [100, 200, 300, 400]',
        {},
        [0, 0, -0.5, 0, 0, 0],
    ),
    # Original form, pixels: (600,300,800,400) is the dog region exactly.
    (
        "tool_list_pixels",
        "<think>zoom <tool_call>[600, 300, 800, 400]</tool_call></think><box>[[200,200,400,400]]</box>",
        {},
        [THIRD, 0, 1, 0, 1, 1],
    ),
    ("tool_crop_text", "<think><tool_call>Crop cat [100, 100, 300, 200]</tool_call></think>cat", {}, [0, 0, 1, 1, 1, 1]),
    # Seed form: (650,300,800,400), area 15000 inside the dog region (20000) -> 0.75.
    (
        "crop_brace_seed",
        "<think>I need the dog. {Crop dog [650.0, 300.0, 800.0, 400.0]} It is brown.</think>\n\n<answer>brown</answer>",
        {"answer": "brown"},
        [0, 0, 0.75, 1, 1, 1],
    ),
    ("crop_brace_malformed", "<think>{Crop dog [650, 300]}</think>cat", {}, [0, 0, -0.5, 1, 0, 0]),
    ("cropped_is_prose", "<think>The {Cropped view} shows a cat</think>cat", {}, [0, 0, 0, 1, 1, 0]),
    # First call misses both regions (-0.5), second is the cat region (1): mean 0.25.
    (
        "tool_miss_and_hit",
        "<think><tool_call>[900,0,1000,50]</tool_call><tool_call>[100,100,300,200]</tool_call></think>cat",
        {},
        [0, 0, 0.25, 1, 1, 1],
    ),
    # -- conversational / multi-turn ------------------------------------------------------------
    ("conversational_single", [{"role": "assistant", "content": f"<think>x</think>{GOOD}"}], {}, [1, 1, 0, 0, 1, 1]),
    (
        # Call in turn 1 (InternVL [600,600,800,800] = dog region), tool turn ignored (its box
        # would otherwise be read), answer from the last turn; thinking spans the call.
        "multi_turn_text_calls",
        [
            {"role": "assistant", "content": '<think>zoom <tool_call>{"name": "crop", "arguments": {"bbox_2d": [600, 600, 800, 800]}}</tool_call>'},
            {"role": "tool", "content": [{"type": "image"}, {"type": "text", "text": GOOD}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a dog</think><box>[[200,200,400,400]]</box>"}]},
        ],
        {},
        [THIRD, 0, 1, 0, 1, 1],
    ),
    (
        # TRL moves a parsed call out of the text into "tool_calls".
        "multi_turn_structured_calls",
        [
            {
                "role": "assistant",
                "content": "<think>zoom",
                "tool_calls": [{"type": "function", "function": {"name": "crop", "arguments": {"bbox_2d": [100, 200, 300, 400]}}}],
            },
            {"role": "tool", "name": "crop", "content": [{"type": "image"}]},
            {"role": "assistant", "content": "</think>cat"},
        ],
        {},
        [0, 0, 1, 1, 1, 1],
    ),
    # -- very long inputs (each would take minutes with a backtracking regex) -------------------
    ("long_think", "<think>" + "a" * 100_000 + f"</think>{GOOD}", {}, [1, 1, 0, 0, 1, 1]),
    ("long_unclosed_box_tags", "<box>" * 20_000, {}, [0, 0, 0, 0, 0, 0]),
    ("long_blank_in_ovis_box", "<think>x</think><box>(0.1,0.2)" + " " * 100_000 + "</box>", {}, [0, 0, 0, 0, 1, 0]),
    ("long_blank_before_letter", "<think>x</think>answer" + " " * 100_000 + "B", {"answer": "B"}, [0, 0, 0, 1, 1, 0]),
    ("long_json_nesting", '<think><tool_call>{"a": ' + "[" * 50_000 + "</tool_call></think>cat", {}, [0, 0, -0.5, 1, 0, 0]),
    ("long_list_prefixes", "<think>x</think>" + "[1," * 33_000, {}, [0, 0, 0, 0, 1, 0]),
    ("long_crop_braces", "<think>" + "{Crop " * 20_000 + "</think>cat", {}, [0, 0, -0.5, 1, 0, 0]),
]
# fmt: on


def _kwargs(overrides: dict, n: int = 1) -> dict:
    ctx = {**CTX, **overrides}
    return {k: [v] * n for k, v in ctx.items()}


def test_table_is_big_enough_and_ids_unique():
    assert len(TABLE) >= 30
    assert len({r[0] for r in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_reward_table(row):
    _, completion, overrides, expected = row
    got = {name: REWARDS[name]([completion], **_kwargs(overrides))[0] for name in NAMES}
    assert got == {n: pytest.approx(e, abs=1e-9) for n, e in zip(NAMES, expected, strict=True)}


def test_whole_table_as_one_batch_matches_rows():
    """TRL calls each function once per batch: rows must not leak into each other."""
    comps = [r[1] for r in TABLE]
    cols = {k: [{**CTX, **r[2]}[k] for r in TABLE] for k in CTX}
    for j, name in enumerate(NAMES):
        got = REWARDS[name](comps, **cols)
        assert got == [pytest.approx(r[3][j], abs=1e-9) for r in TABLE], name


def test_long_completions_are_fast():
    long_rows = [r for r in TABLE if r[0].startswith("long_")]
    start = time.perf_counter()
    for _, completion, overrides, _ in long_rows:
        for name in NAMES:
            REWARDS[name]([completion], **_kwargs(overrides))
    # Linear scanning does all of this in well under a second; a quadratic regex takes minutes.
    assert time.perf_counter() - start < 5.0


def test_iou_hit_threshold_comes_from_config():
    funcs, weights = build_reward_funcs({"iou_hit": 2.0, "format": 0.5}, iou_threshold=0.75)
    assert [f.__name__ for f in funcs] == ["iou_hit", "format"] and weights == [2.0, 0.5]
    hit = funcs[0]
    comps = [
        "<box>[[150.0, 200.5, 300.0, 400.0]]</box>",  # IoU 0.748125
        "<box>[[150,200,300,400]]</box>",  # (150,100,300,200): 15000 / 20000 = 0.75
    ]
    assert hit(comps, **_kwargs({}, 2)) == [0.0, 1.0]


@pytest.mark.parametrize(
    ("weights", "threshold", "key"),
    [
        ({"ioo": 1.0}, 0.5, "rewards.weights.ioo"),
        ({"iou": "high"}, 0.5, "rewards.weights.iou"),
        ({"iou": float("nan")}, 0.5, "rewards.weights.iou"),
        ({}, 0.5, "rewards.weights"),
        ({"iou": 1.0}, 1.5, "rewards.iou_threshold"),
        ({"iou": 1.0}, 0.0, "rewards.iou_threshold"),
    ],
)
def test_build_reward_funcs_names_the_bad_key(weights, threshold, key):
    with pytest.raises(ConfigError) as err:
        build_reward_funcs(weights, threshold)
    assert err.value.key == key
    assert key in str(err.value)


def test_registry_covers_config_default_and_names_are_loggable():
    from vlm_train.config import RewardsConfig

    funcs, _ = build_reward_funcs(RewardsConfig().weights, RewardsConfig().iou_threshold)
    assert [f.__name__ for f in funcs] == list(RewardsConfig().weights)
    assert set(REWARDS) == set(NAMES) == set(RANGES)
    for name, fn in REWARDS.items():
        assert fn.__name__ == name
        assert "Range" in (fn.__doc__ or "")


def test_missing_columns_and_odd_completions_do_not_raise():
    odd = [None, 42, {"role": "assistant", "content": None}, [{"role": "user", "content": GOOD}], [[1, 2]]]
    for name in NAMES:
        assert REWARDS[name](odd) == [0.0] * len(odd)
        # A column of the wrong length reads as all None instead of misaligning rows.
        assert REWARDS[name]([GOOD, GOOD], image_size=[[1000, 500]], target_box=[[100, 100, 300, 200]]) == [0.0, 0.0]
    assert REWARDS["iou"]([]) == []


def test_unknown_coords_read_as_pixels():
    comp = '{"bbox_2d": [100, 100, 300, 200]}'
    assert REWARDS["iou"]([comp], **_kwargs({"coords": "qwen"})) == [1.0]
    # Read as InternVL the same numbers are (100,50,300,100): no overlap with T.
    assert REWARDS["iou"]([comp], **_kwargs({"coords": "1000"})) == [0.0]


def test_normalize_answer_and_choice_letter():
    assert normalize_answer("  The  Red-Cat!! ") == "red cat"
    assert normalize_answer("ＣＡＴ") == "cat"
    assert choice_letter("b") == "B"
    assert choice_letter("(D) a dog") == "D"
    assert choice_letter("Answer: C") == "C"
    assert choice_letter("I think the answer is A, not B") == "A"
    assert choice_letter("A cat") is None
    assert choice_letter("E.") is None


# ---- properties ------------------------------------------------------------------------------

_FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<box>", "</box>", "<ref>", "</ref>", "<point>", "</point>",
    "<tool_call>", "</tool_call>", "{Crop ", "}", "[", "]", "[[", "]]", "(", ")", ",", " ", "\n",
    '{"name": "crop", "arguments": {"bbox_2d": ', '"bbox_2d": ', "1e400", "-5", "0.5", "999", "1001", "NaN",
    "A", "B.", "answer is ", "猫",
]  # fmt: skip
_num = st.one_of(st.integers(-2000, 3000), st.floats(allow_nan=True, allow_infinity=True))
_piece = st.one_of(st.sampled_from(_FRAGMENTS), _num.map(str), st.text(max_size=8))
texts = st.lists(_piece, max_size=40).map("".join)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["assistant", "tool", "user"]), "content": st.one_of(texts, st.none())},
        optional={"tool_calls": st.lists(st.dictionaries(st.sampled_from(["type", "function", "name"]), texts))},
    ),
    max_size=4,
)
sizes = st.one_of(st.none(), st.tuples(st.integers(-5, 4000), st.integers(-5, 4000)).map(list))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    comps=st.lists(st.one_of(texts, messages), min_size=1, max_size=4),
    size=sizes,
    coords=st.sampled_from(["1000", "unit", "pixels", "other"]),
    answer=st.one_of(st.none(), texts),
    target=st.one_of(st.none(), st.lists(_num, min_size=4, max_size=4)),
)
def test_rewards_never_raise_and_stay_in_range(comps, size, coords, answer, target):
    n = len(comps)
    kw = {
        "image_size": [size] * n,
        "target_box": [target] * n,
        "regions": [CTX["regions"]] * n,
        "answer": [answer] * n,
        "coords": [coords] * n,
    }
    for name in NAMES:
        lo, hi = RANGES[name]
        out = REWARDS[name](comps, **kw)
        assert len(out) == n
        assert all(isinstance(v, float) and math.isfinite(v) and lo <= v <= hi for v in out), (name, out)


def test_prompt_that_opens_think_counts_for_the_completion():
    comp = f"The cat is left.</think>{GOOD}"
    kw = _kwargs({})
    assert REWARDS["format"]([comp], **kw) == [0.0]
    assert REWARDS["format"]([comp], prompts=["<|im_start|>assistant\n<think>\n"], **kw) == [1.0]
    # A box written while still thinking is not an answer once the prefilled <think> is known.
    thinking = f"still thinking {GOOD}"
    assert REWARDS["iou"]([thinking], **kw) == [1.0]
    assert REWARDS["iou"]([thinking], prompts=["...<think>"], **kw) == [0.0]
    # Conversational prompts (message lists) change nothing.
    assert REWARDS["format"]([comp], prompts=[[{"role": "user", "content": "<think>"}]], **kw) == [0.0]


def test_a_scorer_bug_scores_the_minimum_and_logs(monkeypatch, caplog):
    import vlm_train.rewards.functions as functions

    def broken(*args, **kwargs):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(functions, "parse_rollout", broken)
    monkeypatch.setattr(functions, "_warned", set())
    with caplog.at_level("WARNING"):
        for name in NAMES:
            assert REWARDS[name]([GOOD, GOOD], **_kwargs({}, 2)) == [RANGES[name][0]] * 2
    assert "parser bug" in caplog.text


def test_config_load_rejects_unknown_reward_with_file_and_key():
    from vlm_train.config import JobConfig

    with pytest.raises(ConfigError) as err:
        JobConfig.from_dict({"rewards": {"weights": {"iou": 1.0, "ioo": 0.5}}}, file="job.yaml")
    assert (err.value.key, err.value.file) == ("rewards.weights.ioo", "job.yaml")
    cfg = JobConfig.from_dict({"rewards": {"weights": {"iou_hit": 1.0, "region": 0.5}, "iou_threshold": 0.7}})
    assert list(cfg.rewards.weights) == ["iou_hit", "region"]
