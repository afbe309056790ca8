"""Grounding metrics against hand-computed values."""

from __future__ import annotations

import pytest

from vlm_train.data.sample import Box
from vlm_train.eval.metrics import iou as box_iou
from vlm_train.eval.metrics import (
    random_shape_baseline,
    random_shape_hit_rate,
    score_boxes,
    score_by_group,
    score_ious,
)

T = [0, 0, 10, 10]  # area 100


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (T, T, 1.0),
        (T, [5, 0, 15, 10], 50 / 150),  # half overlap: 50 / (100 + 100 - 50)
        (T, [0, 0, 5, 5], 25 / 100),  # inside
        (T, [10, 0, 20, 10], 0.0),  # touching edges share no area
        (T, [20, 20, 30, 30], 0.0),
        (T, [5, 5, 5, 9], 0.0),  # zero area
        (T, [10, 10, 0, 0], 0.0),  # inverted corners are not fixed here
        (Box(0, 0, 10, 10), Box(0, 5, 10, 15), 50 / 150),
        (T, None, 0.0),
        (T, [1, 2, 3], 0.0),
        (T, [0, 0, float("nan"), 10], 0.0),
        (T, ["a", 0, 1, 1], 0.0),
        ([0.5, 0.5, 2.5, 1.5], [1.5, 0.5, 3.5, 1.5], 1 / 3),  # floats: inter 1*1, union 2+2-1
    ],
)
def test_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_score_boxes_acc_and_mean_iou():
    preds = [T, [0, 0, 10, 5], [0, 0, 10, 4.9], None]  # IoU 1, 0.5, 0.49, 0 (unparsed)
    targets = [T, T, T, T]
    score, ious = score_boxes(preds, targets)
    assert ious == pytest.approx([1.0, 0.5, 0.49, 0.0])
    assert score.n == 4
    assert score.acc == pytest.approx(2 / 4)  # IoU >= 0.5 counts (InternVL's >=, not VLM-R1's >)
    assert score.mean_iou == pytest.approx(1.99 / 4)
    assert score.to_dict() == {"n": 4, "acc": 0.5, "mean_iou": pytest.approx(0.4975), "threshold": 0.5}
    strict = score_ious(ious, threshold=0.75)
    assert strict.acc == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="3 predictions for 4 targets"):
        score_boxes(preds[:3], targets)


def test_empty_scores_are_zero():
    s = score_ious([])
    assert (s.n, s.acc, s.mean_iou) == (0, 0.0, 0.0)


def test_score_by_group():
    ious = [1.0, 0.2, 0.6, 0.0, 0.5]
    shapes = [1, 2, 2, 3, 3]
    g = score_by_group(ious, shapes)
    assert list(g) == [1, 2, 3]
    assert (g[1].n, g[1].acc, g[1].mean_iou) == (1, 1.0, 1.0)
    assert (g[2].n, g[2].acc, g[2].mean_iou) == (2, 0.5, pytest.approx(0.4))
    assert (g[3].n, g[3].acc, g[3].mean_iou) == (2, 0.5, pytest.approx(0.25))
    with pytest.raises(ValueError, match="5 IoUs for 2 group labels"):
        score_by_group(ious, [1, 2])


def test_random_shape_baseline():
    # Image 1: 1 shape, it is the target -> 1/1.
    # Image 2: 3 shapes, one is the target, one overlaps it with IoU 50/150 < 0.5 -> 1/3.
    # Image 3: 2 shapes; the target box is slightly larger than shape A (IoU 100/121 >= 0.5)
    #          and shape B is elsewhere -> 1/2.
    shapes = [
        [T],
        [T, [5, 0, 15, 10], [50, 50, 60, 60]],
        [[0, 0, 10, 10], [30, 30, 40, 40]],
    ]
    targets = [T, T, [0, 0, 11, 11]]
    assert random_shape_hit_rate(shapes[1], targets[1]) == pytest.approx(1 / 3)
    assert random_shape_hit_rate(shapes[2], targets[2]) == pytest.approx(1 / 2)
    assert random_shape_baseline(shapes, targets) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    # Two shapes that both overlap the target well: a random pick always hits.
    assert random_shape_hit_rate([[0, 0, 10, 10], [0, 0, 10, 9]], T) == 1.0
    assert random_shape_hit_rate([], T) == 0.0
    assert random_shape_baseline([], []) == 0.0
    with pytest.raises(ValueError, match="1 shape lists for 2 targets"):
        random_shape_baseline([[T]], [T, T])


def test_named_shape_share_counts_only_predictions_that_hit_a_shape():
    from vlm_train.eval.metrics import named_shape_share

    a, b, c = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]
    # A random pick among k shapes: each shape boxed once with the first one named -> 1/k.
    assert named_shape_share([a, b], [a, a], [[a, b]] * 2).share == 0.5
    three = named_shape_share([a, b, c], [a, a, a], [[a, b, c]] * 3)
    assert abs(three.share - 1 / 3) < 1e-9 and (three.hits, three.named) == (3, 1)
    # Misses (no box, IoU < 0.5 with every shape) are left out of the share, not counted against it.
    s = named_shape_share([a, None, [5, 5, 25, 25], b], [a, a, a, b], [[a, b]] * 4)
    assert (s.hits, s.named, s.share) == (2, 2, 1.0)
    # The target counts as a shape even when the region list lacks it; nothing hit -> 0.0.
    assert named_shape_share([a], [a], [[]]).share == 1.0
    assert named_shape_share([None], [a], [[a]]).to_dict() == {"named_shape_share": 0.0, "shape_hits": 0}
    with pytest.raises(ValueError):
        named_shape_share([a], [a, a], [[a]])
