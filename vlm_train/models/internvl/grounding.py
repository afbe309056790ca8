"""InternVL's grounding text: ``<ref>phrase</ref><box>[[x1, y1, x2, y2]]</box>``, integers
0-1000 of the original image (specs/models.md B8)."""

from __future__ import annotations

import re

from vlm_train.data.sample import Box

# The RefCOCO script's pattern: first [[a, b, c, d]] (brackets optional around the quad).
_QUAD = re.compile(r"\[*\[\s*([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\s*\]")


def to_thousandths(box: Box, width: int, height: int) -> list[int]:
    def q(v: float, n: int) -> int:
        return int(min(1000, max(0, round(v / n * 1000))))

    return [q(box.x1, width), q(box.y1, height), q(box.x2, width), q(box.y2, height)]


def box_to_text(box: Box, width: int, height: int) -> str:
    x1, y1, x2, y2 = to_thousandths(box, width, height)
    return f"<box>[[{x1}, {y1}, {x2}, {y2}]]</box>"


def grounding_answer(phrase: str, box: Box, width: int, height: int) -> str:
    return f"<ref>{phrase}</ref>{box_to_text(box, width, height)}"


def text_to_boxes(text: str, width: int, height: int) -> list[Box]:
    """Every ``[x1, y1, x2, y2]`` quad in ``text`` as pixel boxes (0-1000 scale as in B8)."""
    out = []
    for m in _QUAD.finditer(text[:20000]):
        v = [float(g) for g in m.groups()]
        # B8: values summing to >= 4 are on the 0-1000 scale; smaller ones are already fractions.
        if sum(v) >= 4:
            v = [x / 1000 for x in v]
        out.append(Box(v[0] * width, v[1] * height, v[2] * width, v[3] * height))
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
