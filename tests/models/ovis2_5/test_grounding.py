"""Grounding text: [0,1) floats with 3 decimals of the original image, both directions."""

from __future__ import annotations

import pytest

from vlm_train.data.sample import Box
from vlm_train.models.ovis2_5.grounding import box_to_text, grounding_prompt, point_to_text, text_to_boxes


def test_box_to_text_normalises_by_original_size():
    assert box_to_text(Box(64, 48, 320, 240), 640, 480) == "<box>(0.100,0.100),(0.500,0.500)</box>"
    # The range is [0, 1): the far edge maps to 0.999, negatives to 0.
    assert box_to_text(Box(-5, 0, 640, 480), 640, 480) == "<box>(0.000,0.000),(0.999,0.999)</box>"


def test_roundtrip_within_rounding():
    box = Box(13.0, 200.5, 411.0, 333.3)
    back = text_to_boxes("<ref>dog</ref>" + box_to_text(box, 500, 400), 500, 400)
    assert len(back) == 1
    for a, b, size in zip(back[0].as_list(), box.as_list(), (500, 400, 500, 400), strict=True):
        assert abs(a - b) <= 0.0005 * size + 1e-9


def test_parses_lists_points_and_spaces_in_order():
    out = "[<box>(0.1,0.2),(0.3,0.4)</box>,<box>( 0.5 , 0.5 ),( 0.6,0.7 )</box>] and <point>(0.25,0.5)</point>"
    boxes = text_to_boxes(out, 200, 100)
    assert [b.as_list() for b in boxes] == [
        pytest.approx([20, 20, 60, 40]),
        pytest.approx([100, 50, 120, 70]),
        pytest.approx([50, 50, 50, 50]),
    ]
    assert point_to_text(50, 50, 200, 100) == "<point>(0.250,0.500)</point>"


def test_garbage_gives_no_box():
    assert text_to_boxes("<box>(a,b),(c,d)</box> <box>[[1,2,3,4]]</box>", 10, 10) == []


def test_grounding_prompt_uses_ref_and_trigger():
    p = grounding_prompt("the red car")
    assert "<ref>the red car</ref>" in p and p.endswith("Please provide the bounding box coordinates.")
