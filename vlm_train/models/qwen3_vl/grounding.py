"""Qwen3-VL's grounding text: a JSON list of objects ``[{"bbox_2d": [x1, y1, x2, y2], "label":
phrase}]``, integers 0-1000 relative to the original image (docs/models.md, "Qwen3-VL"). The
arithmetic is the shared ``THOUSANDTHS`` convention of vlm_train/data/coords.py; this module
holds only the syntax.

``find_boxes`` returns nothing on purpose: Qwen3-VL's answer syntax IS the generic JSON
``bbox_2d`` form, which the rewards already read in the row's ``coords`` (``1000`` for this
family's rows). Claiming it here would make every family's JSON boxes read as 0-1000.
"""

from __future__ import annotations

import json
import re

from vlm_train.data.coords import NUMBER, THOUSANDTHS
from vlm_train.data.sample import Box
from vlm_train.models.base import FoundBox

COORDS = THOUSANDTHS

_BBOX = re.compile(rf"[\"']bbox_2d[\"']\s*:\s*\[\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\]")


def box_to_text(box: Box, width: int, height: int) -> str:
    """One object of the answer list without a label: ``{"bbox_2d": [x1, y1, x2, y2]}``."""
    return json.dumps({"bbox_2d": COORDS.to_values(box, width, height)})


def grounding_answer(phrase: str, box: Box, width: int, height: int) -> str:
    """The official answer: a JSON list of labelled objects (one here), as the model card's and
    cookbooks' grounding outputs; the phrase is written as is (no ``\\u`` escapes)."""
    return json.dumps([{"bbox_2d": COORDS.to_values(box, width, height), "label": phrase}], ensure_ascii=False)


def text_to_boxes(text: str, width: int, height: int) -> list[Box]:
    """Every ``"bbox_2d": [x1, y1, x2, y2]`` in ``text`` as pixel boxes (0-1000 scale): the
    objects of an answer list in order, inside a json code fence or not."""
    return [COORDS.to_box([float(g) for g in m.groups()], width, height) for m in _BBOX.finditer(text[:20000])]


def find_boxes(text: str) -> list[FoundBox]:
    return []


def grounding_prompt(phrase: str) -> str:
    return f"Locate {phrase} in the image and output its bbox_2d coordinates in JSON format."


def value_tokens(processor) -> dict[int, int]:
    """Token id -> coordinate value 0-1000 when each value is a single token (the tiny
    tokenizer); {} for the real Qwen tokenizer, which splits digits (then the value-aware init
    and loss do nothing)."""
    tok = getattr(processor, "tokenizer", processor)
    ids = [tok(str(v), add_special_tokens=False)["input_ids"] for v in range(1001)]
    return {i[0]: v for v, i in enumerate(ids)} if all(len(i) == 1 for i in ids) else {}
