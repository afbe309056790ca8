"""The crop tool: the region of the ORIGINAL image at a box given in original pixels."""

from __future__ import annotations

from PIL import Image

from vlm_train.data.sample import Box


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
