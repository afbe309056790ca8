"""The crop tool: the region of the ORIGINAL image at a box given in original pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image

from vlm_train.data.sample import Box, Part


def clip_box(box: Box, width: int, height: int) -> Box:
    x1, x2 = sorted((box.x1, box.x2))
    y1, y2 = sorted((box.y1, box.y2))
    return Box(max(0.0, min(x1, width)), max(0.0, min(y1, height)), max(0.0, min(x2, width)), max(0.0, min(y2, height)))


def crop(image: Image.Image, box: Box, min_size: int = 4) -> Image.Image:
    """Crop ``image`` at ``box`` (pixels, clipped to the image); tiny boxes grow around their centre
    to ``min_size`` so the vision tower always gets a valid image."""
    w, h = image.size
    b = clip_box(box, w, h)
    x1, y1, x2, y2 = round(b.x1), round(b.y1), round(b.x2), round(b.y2)
    if x2 - x1 < min_size:
        cx = (x1 + x2) // 2
        x1 = max(0, min(w - min_size, cx - min_size // 2))
        x2 = min(w, x1 + min_size)
    if y2 - y1 < min_size:
        cy = (y1 + y2) // 2
        y1 = max(0, min(h - min_size, cy - min_size // 2))
        y2 = min(h, y1 + min_size)
    return image.crop((x1, y1, x2, y2))


def crop_response(source: str, box: Box) -> Part:
    """The tool message part a crop call produces: re-made from the original at render time."""
    return Part("tool_response", source=source, box=box)


def response_image(
    part: Part,
    roots: Sequence[str | os.PathLike],
    max_pixels: int = 64_000_000,
    min_size: int = 4,
) -> Image.Image:
    """The image a ``tool_response`` part stands for.

    A part with ``source`` + ``box`` is cropped from the original image (so every family and
    every epoch sees the same pixels without crop files on disk); a part with ``media`` is
    an image file the data supplied. Paths are confined to ``roots`` like every other medium.
    """
    from vlm_train.data.media import MediaError, load_image

    if part.type != "tool_response":
        raise ValueError(f"not a tool response part: {part.type}")
    if part.source and part.box is not None:
        return crop(load_image(part.source, roots, max_pixels), part.box, min_size)
    if part.media:
        return load_image(part.media, roots, max_pixels)
    raise MediaError("tool response has neither an image nor a source + box to crop")
