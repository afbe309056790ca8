"""Coordinate conversions pixels <-> 0-1000 <-> [0,1) and box checks, all in coords.py."""

from __future__ import annotations

import pytest

from vlm_train.data import coords
from vlm_train.data.sample import Box


def test_1000_round_trip_within_rounding():
    b = Box(10.5, 20.25, 300.0, 479.0)
    v = coords.to_1000(b, 640, 480)
    assert v == [16, 42, 469, 998]
    back = coords.from_1000(v, 640, 480)
    for a, c in zip(back.as_list(), b.as_list(), strict=True):
        assert abs(a - c) <= 640 / 1000 / 2 + 1e-9


def test_unit_is_below_one_with_three_decimals():
    v = coords.to_unit(Box(0, 0, 640, 480), 640, 480)
    assert v == [0.0, 0.0, 0.999, 0.999]
    assert coords.to_unit(Box(64, 48, 320, 240), 640, 480) == [0.1, 0.1, 0.5, 0.5]
    assert coords.from_unit([0.1, 0.1, 0.5, 0.5], 640, 480) == Box(64, 48, 320, 240)


def test_clamping_and_bad_sizes():
    assert coords.to_1000(Box(-5, -5, 700, 500), 640, 480) == [0, 0, 1000, 1000]
    with pytest.raises(ValueError, match="positive"):
        coords.to_1000(Box(0, 0, 1, 1), 0, 10)


@pytest.mark.parametrize(
    "vals,msg",
    [
        ([1, 2, 3], "4 numbers"),
        ([1, "x", 3, 4], "non-numeric"),
        ([1, True, 3, 4], "non-numeric"),
        ([1, float("nan"), 3, 4], "non-finite"),
    ],
)
def test_parse_numbers_rejects(vals, msg):
    with pytest.raises(ValueError, match=msg):
        coords.parse_numbers(vals)


def test_box_problem():
    assert coords.box_problem(Box(0, 0, 10, 10), 10, 10) is None
    assert "inverted" in coords.box_problem(Box(5, 0, 4, 10), 10, 10)
    assert "outside the 10x10 image" in coords.box_problem(Box(0, 0, 12, 10), 10, 10)
    assert "negative" in coords.box_problem(Box(-3, 0, 4, 10))


def test_internvl_text_round_trip():
    b = Box(64, 48, 320, 240)
    text = coords.grounding_answer("the cat", b, 640, 480, coords.internvl_box_text)
    assert text == "<ref>the cat</ref><box>[[100, 100, 500, 500]]</box>"
    assert coords.internvl_text_to_boxes(text, 640, 480) == [b]
    assert coords.internvl_text_to_boxes("[[1, 2, x, 4]] and [[0,0,1000,1000]]", 10, 10) == [Box(0, 0, 10, 10)]
    assert coords.internvl_grounding_prompt("a dog").endswith("describes: <ref>a dog</ref>")
