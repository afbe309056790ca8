"""Qwen3-VL's grounding answer is its official JSON list of labelled objects (docs/models.md,
"Qwen3-VL"), read back by the family and by the rewards in the 0-1000 convention."""

from __future__ import annotations

import json

from vlm_train.data.sample import Box
from vlm_train.models import get_family
from vlm_train.rewards.parse import parse_completion

FAM = get_family("qwen3_vl")
W, H = 640, 480
BOX = Box(64, 48, 320, 240)  # 0-1000: [100, 100, 500, 500]


def test_answer_is_the_official_labelled_json_list():
    text = FAM.grounding_answer("the red car", BOX, W, H)
    assert text == '[{"bbox_2d": [100, 100, 500, 500], "label": "the red car"}]'
    assert json.loads(text) == [{"bbox_2d": [100, 100, 500, 500], "label": "the red car"}]
    # The phrase is written as the model writes it, not \\u-escaped; quotes stay valid JSON.
    odd = FAM.grounding_answer('the "niño" car', BOX, W, H)
    assert "niño" in odd and json.loads(odd)[0]["label"] == 'the "niño" car'


def test_text_to_boxes_reads_every_object_of_a_fenced_list():
    # The form the released models write for several objects: a json code fence around the list.
    text = ('```json\n[\n\t{"bbox_2d": [100, 100, 500, 500], "label": "car"},\n'
            '\t{"bbox_2d": [0, 500, 1000, 1000], "label": "road"}\n]\n```')
    assert FAM.text_to_boxes(text, W, H) == [BOX, Box(0, 240, 640, 480)]
    assert FAM.text_to_boxes(FAM.grounding_answer("car", BOX, W, H), W, H) == [BOX]


def test_rewards_read_the_answer_in_the_family_convention():
    p = parse_completion(FAM.grounding_answer("the red car", BOX, W, H), (W, H), FAM.coords.name)
    assert [b.box for b in p.answer_boxes] == [BOX] and p.answer_boxes[0].convention == "1000"
