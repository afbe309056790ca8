"""Coordinate conventions, in one place.

Canonical boxes are original-image pixels (x1, y1, x2, y2, top-left origin). A family writes
boxes in text in its own convention, described as data by a ``CoordConvention`` (the family's
``coords`` field); every conversion pixels <-> convention is a method of that class, so no two
places scale or round differently. The vocabulary has three names, the same everywhere (the
``coords`` column of GRPO rows, ``json_coords`` of data readers, the rewards):

- ``pixels``: absolute pixels of the original image (seed data's crop calls);
- ``1000``: integers 0-1000 relative to the original image size;
- ``unit``: floats in [0, 1) with 3 decimals relative to the original image.

Each family's ``coords`` names its convention; docs/models.md gives which family uses which and
the public sources.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from vlm_train.data.sample import Box


@dataclass(frozen=True)
class CoordConvention:
    """How a family writes a coordinate in text.

    Attributes:
        name: the convention's name in the shared vocabulary (pixels, 1000, unit).
        scale: the value written for the image's full width/height; None: absolute pixels.
        integer: values are written as integers (rounded).
        decimals: decimals written for float values (None: as is).
        write_max: the largest value written (e.g. 0.999 for [0, 1) at 3 decimals); None: scale.
        read_max: the largest value read as still inside the image (a model rounding 0.9995
            writes 1.0, the edge); None: scale.
        reference: which image size the values are relative to; always the original image
            (not the resized or tiled one the vision encoder sees).
    """

    name: str
    scale: float | None
    integer: bool = False
    decimals: int | None = None
    write_max: float | None = None
    read_max: float | None = None
    reference: str = "original"

    def to_values(self, box: Box, width: float, height: float) -> list[float]:
        """Pixels -> the four values this convention writes (clamped to the image, rounded)."""
        _check_size(width, height)
        raw = [box.x1, box.y1, box.x2, box.y2]
        if self.scale is None:
            return raw
        hi = self.scale if self.write_max is None else self.write_max
        out: list[float] = []
        for i, v in enumerate(raw):
            rel = v / (width if i % 2 == 0 else height) * self.scale
            if self.integer:
                out.append(int(min(hi, max(0, round(rel)))))
            else:
                r = min(hi, max(0.0, rel))
                out.append(round(r, self.decimals) if self.decimals is not None else r)
        return out

    def to_text_values(self, box: Box, width: float, height: float) -> list[str]:
        """``to_values`` as the strings a family writes (e.g. "0.125", "125")."""
        return [self.format_value(v) for v in self.to_values(box, width, height)]

    def format_value(self, v: float) -> str:
        """One value as text (integers plain, floats with the convention's decimals)."""
        if self.integer:
            return str(int(v))
        return f"{v:.{self.decimals}f}" if self.decimals is not None else repr(float(v))

    def to_pixels(self, values: Sequence[float], width: float, height: float) -> list[float]:
        """Raw (x, y, x, y, ...) values in this convention -> pixels (not clipped)."""
        if self.scale is None:
            return [float(v) for v in values]
        return [float(v) * (width if i % 2 == 0 else height) / self.scale for i, v in enumerate(values)]

    def to_box(self, values: Sequence[float], width: float, height: float) -> Box:
        """Four raw values -> a pixel ``Box``."""
        _check_size(width, height)
        x1, y1, x2, y2 = self.to_pixels(list(values), width, height)
        return Box(x1, y1, x2, y2)

    def in_range(self, values: Sequence[float], width: float, height: float) -> bool:
        """True when every raw value lies inside the image in this convention."""
        if self.scale is None:
            hi_x, hi_y = float(width), float(height)
        else:
            hi_x = hi_y = self.scale if self.read_max is None else self.read_max
        return all(0.0 <= v <= (hi_x if i % 2 == 0 else hi_y) for i, v in enumerate(values))


# A number as a model writes one in text: ASCII digits only (Python's \d also takes e.g.
# fullwidth digits, which no family writes), optional sign, decimals and exponent.
NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# ``[x1, y1, x2, y2]`` with the four numbers as groups (no adjacent unbounded quantifiers).
FOUR_LIST = rf"\[\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\]"

PIXELS = CoordConvention("pixels", scale=None)
THOUSANDTHS = CoordConvention("1000", scale=1000.0, integer=True)
# [0, 1): 0.999 is the largest value at 3 decimals; 1.0 is read as the edge (rounded 0.9995).
UNIT = CoordConvention("unit", scale=1.0, decimals=3, write_max=0.999, read_max=1.0)

CONVENTIONS: dict[str, CoordConvention] = {c.name: c for c in (PIXELS, THOUSANDTHS, UNIT)}


def convention(name: str | CoordConvention) -> CoordConvention:
    """The convention of a name (or the convention itself); ValueError naming the choices."""
    if isinstance(name, CoordConvention):
        return name
    try:
        return CONVENTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown coordinate convention {name!r} (known: {', '.join(CONVENTIONS)})") from None


def _check_size(width: float, height: float) -> None:
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")


def valid_size(size: object) -> tuple[float, float] | None:
    """``(w, h)`` from an ``image_size`` cell ([w, h]) when both are finite and positive."""
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        return None
    try:
        w, h = float(size[0]), float(size[1])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        return None
    return w, h


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


# ---- family-neutral defaults (data read or generated without a family) ----------------------


def plain_grounding_answer(phrase: str, box: Box, width: float, height: float) -> str:
    """``{"bbox_2d": [x1, y1, x2, y2], "label": phrase}`` in whole pixels: the neutral answer of
    data built without a family (training always passes the family's ``grounding_answer``)."""
    _check_size(width, height)
    vals = [int(round(v)) for v in box.as_list()]
    return json.dumps({"bbox_2d": vals, "label": phrase}, ensure_ascii=False)


def plain_grounding_prompt(phrase: str) -> str:
    """The neutral grounding question (training uses the family's ``grounding_prompt``)."""
    return f"Give the bounding box of: {phrase}"
