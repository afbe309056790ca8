"""Ovis2.5 grounding text: floats in [0, 1) with 3 decimals of the original image
(docs/models.md, "Ovis2.5"); the arithmetic is the shared ``UNIT`` convention.

    <ref>phrase</ref><box>(x1,y1),(x2,y2)</box>     and     <point>(x,y)</point>

Everything else holds canonical pixel ``Box`` objects.
"""

from __future__ import annotations

import re

from vlm_train.data.coords import NUMBER, UNIT
from vlm_train.data.sample import Box
from vlm_train.data.toolcalls import tag_spans
from vlm_train.models.base import FoundBox

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX_RE = re.compile(rf"<box>\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*</box>")
_POINT_RE = re.compile(rf"<point>\s*\({_NUM},{_NUM}\)\s*</point>")
COORDS = UNIT


def box_to_text(box: Box, width: int, height: int) -> str:
    """``<box>(x1,y1),(x2,y2)</box>`` for a pixel box of a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = COORDS.to_text_values(box, width, height)
    return f"<box>({x1},{y1}),({x2},{y2})</box>"


def grounding_answer(phrase: str, box: Box, width: int, height: int) -> str:
    """The phrase in ``<ref>`` tags, then its box (the model card's grounding output)."""
    return f"<ref>{phrase}</ref>{box_to_text(box, width, height)}"


def point_to_text(x: float, y: float, width: int, height: int) -> str:
    px, py, _, _ = COORDS.to_text_values(Box(x, y, x, y), width, height)
    return f"<point>({px},{py})</point>"


def box_to_floats(box: Box, width: int, height: int) -> list[str]:
    """The four normalised coordinates as 3-decimal strings (used in tool-call JSON)."""
    return COORDS.to_text_values(box, width, height)


def text_to_boxes(text: str, width: int, height: int) -> list[Box]:
    """All boxes and points in ``text`` (in order of appearance), in original-image pixels.

    A point becomes a zero-area box (x, y, x, y). Values are scaled as they are (no clipping),
    so a malformed prediction stays visibly wrong instead of being silently repaired.
    """
    found: list[tuple[int, Box]] = []
    for m in _BOX_RE.finditer(text):
        found.append((m.start(), COORDS.to_box([float(g) for g in m.groups()], width, height)))
    for m in _POINT_RE.finditer(text):
        x, y = (float(g) for g in m.groups())
        found.append((m.start(), COORDS.to_box([x, y, x, y], width, height)))
    return [b for _, b in sorted(found, key=lambda t: t[0])]


# "(?:,\s*)?" rather than ",?\s*": two adjacent \s* would backtrack quadratically on long blanks.
_PAIR = re.compile(rf"\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*(?:,\s*)?\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)")
_ONE = re.compile(rf"\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)")


def find_boxes(text: str) -> list[FoundBox]:
    """Pairs inside ``<box>…</box>`` and points inside ``<point>…</point>``, raw [0,1) values."""
    out = []
    for s, i0, i1, _ in tag_spans(text, "<box>", "</box>"):
        out += [FoundBox(m.start(), m.groups(), "pair_box", s) for m in _PAIR.finditer(text, i0, i1)]
    for s, i0, i1, _ in tag_spans(text, "<point>", "</point>"):
        out += [FoundBox(s, m.groups(), "pair_point", s) for m in _ONE.finditer(text, i0, i1)]
    return out


def grounding_prompt(phrase: str) -> str:
    """The model card's trigger: the phrase in <ref></ref>, ending with the box request."""
    return f"<ref>{phrase}</ref>\nPlease provide the bounding box coordinates."
