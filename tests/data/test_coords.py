"""Coordinate conventions (pixels <-> 0-1000 <-> [0,1)) and box checks, all in coords.py."""

from __future__ import annotations

import pytest

from vlm_train.data import coords
from vlm_train.data.sample import Box


def test_1000_round_trip_within_rounding():
    b = Box(10.5, 20.25, 300.0, 479.0)
    v = coords.THOUSANDTHS.to_values(b, 640, 480)
    assert v == [16, 42, 469, 998]
    back = coords.THOUSANDTHS.to_box(v, 640, 480)
    for a, c in zip(back.as_list(), b.as_list(), strict=True):
        assert abs(a - c) <= 640 / 1000 / 2 + 1e-9


def test_unit_is_below_one_with_three_decimals():
    v = coords.UNIT.to_values(Box(0, 0, 640, 480), 640, 480)
    assert v == [0.0, 0.0, 0.999, 0.999]
    assert coords.UNIT.to_values(Box(64, 48, 320, 240), 640, 480) == [0.1, 0.1, 0.5, 0.5]
    assert coords.UNIT.to_box([0.1, 0.1, 0.5, 0.5], 640, 480) == Box(64, 48, 320, 240)


def test_clamping_and_bad_sizes():
    assert coords.THOUSANDTHS.to_values(Box(-5, -5, 700, 500), 640, 480) == [0, 0, 1000, 1000]
    with pytest.raises(ValueError, match="positive"):
        coords.THOUSANDTHS.to_values(Box(0, 0, 1, 1), 0, 10)


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


def test_neutral_defaults_name_no_family():
    b = Box(64, 48, 320, 240)
    text = coords.plain_grounding_answer("the cat", b, 640, 480)
    assert text == '{"bbox_2d": [64, 48, 320, 240], "label": "the cat"}'
    assert coords.plain_grounding_answer("el niño", b, 640, 480).endswith('"label": "el niño"}')
    assert coords.plain_grounding_prompt("a dog").endswith("a dog")


def test_convention_lookup_and_ranges():
    assert coords.convention("1000") is coords.THOUSANDTHS and coords.convention(coords.UNIT) is coords.UNIT
    with pytest.raises(ValueError, match="known: pixels, 1000, unit"):
        coords.convention("internvl")
    assert coords.UNIT.in_range([0, 0, 1.0, 0.5], 10, 10) and not coords.UNIT.in_range([0, 0, 1.01, 0.5], 10, 10)
    assert coords.PIXELS.in_range([0, 0, 10, 5], 10, 5) and not coords.PIXELS.in_range([0, 0, 11, 5], 10, 5)
    assert coords.UNIT.to_text_values(Box(64, 48, 320, 240), 640, 480) == ["0.100", "0.100", "0.500", "0.500"]
    assert coords.THOUSANDTHS.to_text_values(Box(64, 48, 320, 240), 640, 480) == ["100", "100", "500", "500"]
