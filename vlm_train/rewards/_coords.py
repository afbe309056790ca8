"""Family coordinate conventions -> original-image pixels, for the reward parsers.

Private stand-in: ``vlm_train.data.coords`` (from_1000 / from_unit) was not in main when the
rewards were written. The arithmetic here is the same (x * W / 1000 for InternVL, x * W for
Ovis2.5), so switching to that module later changes no reward value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Convention = Literal["internvl", "ovis2_5", "pixels"]
CONVENTIONS: tuple[str, ...] = ("internvl", "ovis2_5", "pixels")

# Largest raw value each convention may write for a point still inside the image. Ovis2.5
# writes [0, 1) but 1.0 is what a model rounding 0.9995 emits, so it is accepted as the edge.
_RAW_MAX = {"internvl": 1000.0, "ovis2_5": 1.0}


def to_pixels(values: Sequence[float], convention: str, width: float, height: float) -> list[float]:
    """Raw (x, y, x, y, ...) values in ``convention`` -> pixels of a ``width`` x ``height`` image."""
    if convention == "internvl":
        sx, sy = width / 1000.0, height / 1000.0
    elif convention == "ovis2_5":
        sx, sy = float(width), float(height)
    else:
        sx = sy = 1.0
    return [v * (sx if i % 2 == 0 else sy) for i, v in enumerate(values)]


def raw_in_range(values: Sequence[float], convention: str, width: float, height: float) -> bool:
    """True when every raw value lies inside the image in its own convention."""
    if convention in _RAW_MAX:
        hi_x = hi_y = _RAW_MAX[convention]
    else:
        hi_x, hi_y = float(width), float(height)
    return all(0.0 <= v <= (hi_x if i % 2 == 0 else hi_y) for i, v in enumerate(values))


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
