"""Loading images safely: paths confined to roots, decompression-bomb cap, EXIF, RGB.

(Minimal version; the data layer extends this module.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps


class MediaError(ValueError):
    """A media file that cannot be used; the message names the path and the reason."""


def resolve_path(path: str, roots: Sequence[str | os.PathLike]) -> Path:
    """Resolve ``path`` against ``roots``; symlinks are resolved before the confinement check."""
    if not roots:
        raise MediaError(f"{path}: no image root configured")
    candidates = [Path(path)] if os.path.isabs(path) else [Path(r) / path for r in roots]
    real_roots = [Path(r).resolve() for r in roots]
    for c in candidates:
        real = c.resolve()
        if not any(real == r or r in real.parents for r in real_roots):
            raise MediaError(f"{path}: resolves to {real}, outside the image roots")
        if real.exists():
            return real
    raise MediaError(f"{path}: file not found under {', '.join(map(str, roots))}")


def load_image(path: str, roots: Sequence[str | os.PathLike], max_pixels: int = 64_000_000) -> Image.Image:
    real = resolve_path(path, roots)
    try:
        with Image.open(real) as im:
            if im.width * im.height > max_pixels:
                raise MediaError(f"{path}: {im.width}x{im.height} exceeds the {max_pixels}-pixel cap")
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except MediaError:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise MediaError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
