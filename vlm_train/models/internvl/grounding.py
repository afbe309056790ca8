"""InternVL's grounding text: ``<ref>phrase</ref><box>[[x1, y1, x2, y2]]</box>``, integers
0-1000 of the original image (docs/models.md, "InternVL3.5"). The arithmetic is the shared
``THOUSANDTHS`` convention of vlm_train/data/coords.py; this module holds only the syntax."""

from __future__ import annotations

import re

from vlm_train.data.coords import FOUR_LIST, THOUSANDTHS, UNIT
from vlm_train.data.sample import Box
from vlm_train.data.toolcalls import tag_spans
from vlm_train.models.base import FoundBox

COORDS = THOUSANDTHS

# The RefCOCO script's pattern: first [[a, b, c, d]] (brackets optional around the quad).
_QUAD = re.compile(r"\[*\[\s*([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\s*\]")


def box_to_text(box: Box, width: int, height: int) -> str:
    x1, y1, x2, y2 = COORDS.to_text_values(box, width, height)
    return f"<box>[[{x1}, {y1}, {x2}, {y2}]]</box>"


def grounding_answer(phrase: str, box: Box, width: int, height: int) -> str:
    """The phrase in ``<ref>`` tags, then its box (the RefCOCO fine-tuning answers)."""
    return f"<ref>{phrase}</ref>{box_to_text(box, width, height)}"


def text_to_boxes(text: str, width: int, height: int) -> list[Box]:
    """Every ``[x1, y1, x2, y2]`` quad in ``text`` as pixel boxes (0-1000 scale)."""
    out = []
    for m in _QUAD.finditer(text[:20000]):
        v = [float(g) for g in m.groups()]
        # The RefCOCO protocol: values summing to >= 4 are on the 0-1000 scale; smaller ones
        # are already fractions of the image.
        out.append((COORDS if sum(v) >= 4 else UNIT).to_box(v, width, height))
    return out


_FOUR = re.compile(FOUR_LIST)


def find_boxes(text: str) -> list[FoundBox]:
    """Quads inside ``<box>…</box>`` (``[[..],[..]]`` holds several), raw 0-1000 values."""
    out = []
    for s, i0, i1, _ in tag_spans(text, "<box>", "</box>"):
        out += [FoundBox(m.start(), m.groups(), "quad_box", s) for m in _FOUR.finditer(text, i0, i1)]
    return out


def grounding_prompt(phrase: str) -> str:
    return f"Please provide the bounding box coordinate of the region this sentence describes: <ref>{phrase}</ref>"


def value_tokens(processor) -> dict[int, int]:
    """Token id -> coordinate value, when every value 0-1000 is one token of the vocabulary.

    The tiny tokenizer has one token per value; real checkpoints (Qwen's tokenizer splits digits)
    have not, and get an empty mapping: the value-aware init and loss then do nothing.
    """
    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    out = {}
    for v in range(1001):
        ids = tok(str(v), add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            return {}
        out[ids[0]] = v
    return out
