"""Build-time pretraining of a tiny vision tower: the dense targets, and that it learns."""

from __future__ import annotations

import random

import torch

from vlm_train.data.sample import Box
from vlm_train.data.synthetic import Scene, Shape
from vlm_train.models.common.vision_pretrain import scenes, token_targets


def test_each_token_is_labelled_with_the_shape_covering_most_of_its_cell():
    # 128 px canvas, 4x4 tokens of 32 px: a large red circle over cells (0,0),(0,1) and a
    # small blue square inside cell (3,3).
    big = Shape("circle", "red", "large", Box(4, 4, 44, 30))
    small = Shape("square", "blue", "small", Box(100, 100, 120, 120))
    present, box, colour, kind, size = token_targets(Scene([big, small], 0, "colour", "the red circle"), 128, 4, 4)
    assert present.nonzero().flatten().tolist() == [0, 1, 15]
    assert torch.allclose(box[1], torch.tensor([4, 4, 44, 30]) / 128)
    assert torch.allclose(box[15], torch.tensor([100, 100, 120, 120]) / 128)
    assert colour[0] == colour[1] != colour[15] and kind[0] != kind[15] and size[0] != size[15]
    assert (colour[2:15] == -100).all()


def test_scenes_are_their_own_seed_space():
    a = scenes(0, 3, 128, 3)
    b = scenes(0, 3, 128, 3)
    assert [s.phrase for _, s in a] == [s.phrase for _, s in b]
    assert list(a[0][0].getdata()) == list(b[0][0].getdata())
    # Not the synthetic training set's scenes of the same seed and index.
    from vlm_train.data.synthetic import make_scene

    train0 = make_scene(random.Random("vlm_train.synthetic/0/0"), 128, 3)
    assert [s.box for s in train0.shapes] != [s.box for s in a[0][1].shapes]


def test_pattern_pretraining_labels_each_token_with_its_shape_pattern():
    from vlm_train.data.synthetic import PATTERNS

    striped = Shape("circle", "red", "large", Box(4, 4, 44, 30), pattern="striped")
    plain = Shape("square", "blue", "small", Box(100, 100, 120, 120))
    scene = Scene([striped, plain], 0, "colour", "the red circle")
    *_, pattern = token_targets(scene, 128, 4, 4, patterns=True)
    assert pattern[0] == pattern[1] == PATTERNS.index("striped") and pattern[15] == PATTERNS.index("plain")
    assert (pattern[2:15] == -100).all()
    assert len(token_targets(scene, 128, 4, 4)) == 5  # without patterns, the task is unchanged
    # Every shape of a pattern scene is striped or plain at random, whatever its phrase names.
    drawn = [s.pattern for _, sc in scenes(0, 40, 128, 3, patterns=True) for s in sc.shapes]
    assert set(drawn) == set(PATTERNS)
    assert {s.pattern for _, sc in scenes(0, 40, 128, 3) for s in sc.shapes} == {"plain"}
