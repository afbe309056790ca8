"""Coordinate conventions, in one place.

Canonical boxes are original-image pixels (x1, y1, x2, y2). Families speak other
conventions in text: InternVL integers 0-1000 of the image size, Ovis2.5 floats in [0, 1)
with 3 decimals. Every conversion goes through this module so that no two places round
differently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from vlm_train.data.sample import Box

# Largest value the [0,1) convention may take at 3 decimals.
_UNIT_MAX = 0.999


def _check_size(width: float, height: float) -> None:
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")


def to_1000(box: Box, width: float, height: float) -> list[int]:
    """Pixels -> InternVL integers 0-1000 (rounded, clamped)."""
    _check_size(width, height)
    sx, sy = 1000.0 / width, 1000.0 / height
    vals = [box.x1 * sx, box.y1 * sy, box.x2 * sx, box.y2 * sy]
    return [int(min(1000, max(0, round(v)))) for v in vals]


def from_1000(values: Sequence[float], width: float, height: float) -> Box:
    """InternVL 0-1000 -> pixels."""
    _check_size(width, height)
    x1, y1, x2, y2 = (float(v) for v in values)
    return Box(x1 * width / 1000.0, y1 * height / 1000.0, x2 * width / 1000.0, y2 * height / 1000.0)


def to_unit(box: Box, width: float, height: float, decimals: int = 3) -> list[float]:
    """Pixels -> Ovis2.5 floats in [0, 1) with ``decimals`` decimals (clamped below 1)."""
    _check_size(width, height)
    vals = [box.x1 / width, box.y1 / height, box.x2 / width, box.y2 / height]
    return [round(min(_UNIT_MAX, max(0.0, v)), decimals) for v in vals]


def from_unit(values: Sequence[float], width: float, height: float) -> Box:
    """Ovis2.5 [0, 1) -> pixels."""
    _check_size(width, height)
    x1, y1, x2, y2 = (float(v) for v in values)
    return Box(x1 * width, y1 * height, x2 * width, y2 * height)


def parse_numbers(values: Sequence[object]) -> list[float]:
    """Four finite numbers from JSON/text values; ValueError naming the bad value otherwise."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise ValueError(f"a box needs 4 numbers [x1, y1, x2, y2], got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool):
            raise ValueError(f"non-numeric box coordinate {v!r}")
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"non-numeric box coordinate {v!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"non-finite box coordinate {v!r}")
        out.append(f)
    return out


def box_problem(box: Box, width: float | None = None, height: float | None = None, tol: float = 1.0) -> str | None:
    """Why ``box`` is not a valid pixel box of a ``width`` x ``height`` image (None when valid).

    ``tol`` pixels of slack absorb rounding in converted datasets (e.g. 0-1000 -> pixels).
    """
    if box.x2 <= box.x1 or box.y2 <= box.y1:
        return f"empty or inverted box {box.as_list()} (needs x1 < x2 and y1 < y2)"
    if min(box.x1, box.y1) < -tol:
        return f"box {box.as_list()} has negative coordinates"
    if width is not None and height is not None and (box.x2 > width + tol or box.y2 > height + tol):
        return f"box {box.as_list()} lies outside the {width}x{height} image"
    return None


# ---- InternVL's grounding text (specs/models.md B8); defaults of the synthetic data --------

INTERNVL_GROUNDING_PROMPT = (
    "Please provide the bounding box coordinate of the region this sentence describes: <ref>{}</ref>"
)


def internvl_box_text(box: Box, width: float, height: float) -> str:
    """``<box>[[x1, y1, x2, y2]]</box>`` with integers 0-1000."""
    x1, y1, x2, y2 = to_1000(box, width, height)
    return f"<box>[[{x1}, {y1}, {x2}, {y2}]]</box>"


def grounding_answer(phrase: str, box: Box, width: int, height: int, box_text: Callable[[Box, int, int], str]) -> str:
    """``<ref>phrase</ref>`` + the family's box text (unless that text already names the phrase)."""
    body = box_text(box, width, height)
    return body if "<ref>" in body else f"<ref>{phrase}</ref>{body}"


def internvl_grounding_prompt(phrase: str) -> str:
    return INTERNVL_GROUNDING_PROMPT.format(phrase)


_BOX_1000 = re.compile(r"\[*\[\s*([^,\]]+),([^,\]]+),([^,\]]+),([^,\]]+?)\s*\]\]*")


def internvl_text_to_boxes(text: str, width: float, height: float) -> list[Box]:
    """Parse ``[[x1, y1, x2, y2]]`` boxes (0-1000) back to pixels; unparsable groups are skipped."""
    out = []
    for m in _BOX_1000.finditer(text):
        try:
            out.append(from_1000(parse_numbers(list(m.groups())), width, height))
        except ValueError:
            continue
    return out
