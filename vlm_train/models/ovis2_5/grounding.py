"""Ovis2.5 grounding text (specs A8): floats in [0, 1) with 3 decimals of the original image.

    <ref>phrase</ref><box>(x1,y1),(x2,y2)</box>     and     <point>(x,y)</point>

Conversion happens only here; everything else holds canonical pixel ``Box`` objects.
"""

from __future__ import annotations

import re

from vlm_train.data.sample import Box

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX_RE = re.compile(rf"<box>\s*\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*</box>")
_POINT_RE = re.compile(rf"<point>\s*\({_NUM},{_NUM}\)\s*</point>")
# Largest value below 1 at 3 decimals: the format's range is [0, 1).
_MAX = 0.999


def _norm(v: float, size: int) -> str:
    return f"{min(max(v / size, 0.0), _MAX):.3f}"


def box_to_text(box: Box, width: int, height: int) -> str:
    """``<box>(x1,y1),(x2,y2)</box>`` for a pixel box of a ``width`` x ``height`` image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return (
        f"<box>({_norm(box.x1, width)},{_norm(box.y1, height)}),"
        f"({_norm(box.x2, width)},{_norm(box.y2, height)})</box>"
    )


def point_to_text(x: float, y: float, width: int, height: int) -> str:
    return f"<point>({_norm(x, width)},{_norm(y, height)})</point>"


def box_to_floats(box: Box, width: int, height: int) -> list[str]:
    """The four normalised coordinates as 3-decimal strings (used in tool-call JSON)."""
    return [_norm(box.x1, width), _norm(box.y1, height), _norm(box.x2, width), _norm(box.y2, height)]


def text_to_boxes(text: str, width: int, height: int) -> list[Box]:
    """All boxes and points in ``text`` (in order of appearance), in original-image pixels.

    A point becomes a zero-area box (x, y, x, y). Values are scaled as they are (no clipping),
    so a malformed prediction stays visibly wrong instead of being silently repaired.
    """
    found: list[tuple[int, Box]] = []
    for m in _BOX_RE.finditer(text):
        x1, y1, x2, y2 = (float(g) for g in m.groups())
        found.append((m.start(), Box(x1 * width, y1 * height, x2 * width, y2 * height)))
    for m in _POINT_RE.finditer(text):
        x, y = (float(g) for g in m.groups())
        found.append((m.start(), Box(x * width, y * height, x * width, y * height)))
    return [b for _, b in sorted(found, key=lambda t: t[0])]


def grounding_prompt(phrase: str) -> str:
    """The model card's trigger: the phrase in <ref></ref>, ending with the box request."""
    return f"<ref>{phrase}</ref>\nPlease provide the bounding box coordinates."
