"""Loading images safely: paths confined to roots, decompression-bomb cap, EXIF, RGB.

Every media path in the data is resolved against the configured roots and must land inside
one of them after symlinks are resolved, so a dataset cannot read ``/etc/passwd`` through
``../..``, an absolute path or a planted link. Sizes are read from the header before any
pixel is decoded, so a file claiming 20000x20000 pixels is refused without allocating it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from vlm_train.data.errors import CORRUPT_MEDIA, MISSING_MEDIA, OUTSIDE_ROOT, TOO_LARGE
from vlm_train.data.sample import Sample

# EXIF orientations that swap width and height (transpose / rotate 90 / transverse / rotate 270).
_SWAPS_AXES = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112

# The only decoders PIL may pick, whatever a file is named: plain raster formats. PostScript,
# EPS and PDF would be handed to Ghostscript (an interpreter running the file as a program),
# so an EPS file named ``x.jpg`` must be refused as a bad image, not identified by its content.
RASTER_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


class MediaError(ValueError):
    """A media file that cannot be used; the message names the path and the reason.

    Attributes:
        kind: problem class from ``vlm_train.data.errors`` (missing_media, outside_root, ...).
    """

    def __init__(self, message: str, kind: str = CORRUPT_MEDIA):
        super().__init__(message)
        self.kind = kind


def _inside(real: Path, roots: Sequence[Path]) -> bool:
    return any(real == r or r in real.parents for r in roots)


def resolve_path(path: str, roots: Sequence[str | os.PathLike]) -> Path:
    """Resolve ``path`` against ``roots``; symlinks are resolved before the confinement check.

    A relative path is tried under each root in order; an absolute path must itself lie
    inside a root. Raises MediaError (outside_root or missing_media).
    """
    if not path:
        raise MediaError("empty media path", MISSING_MEDIA)
    if not roots:
        raise MediaError(f"{path}: no image root configured", OUTSIDE_ROOT)
    real_roots = [Path(r).resolve() for r in roots]
    candidates = [Path(path)] if os.path.isabs(path) else [Path(r) / path for r in roots]
    for c in candidates:
        real = c.resolve()
        if not _inside(real, real_roots):
            raise MediaError(
                f"{path}: resolves to {real}, outside the image roots ({', '.join(map(str, roots))}); "
                "list its folder in data.image_roots or the source's image_root",
                OUTSIDE_ROOT,
            )
        if real.exists():
            return real
    raise MediaError(f"{path}: file not found under {', '.join(map(str, roots))}", MISSING_MEDIA)


def _open(real: Path, shown: str) -> Image.Image:
    if real.is_dir():
        raise MediaError(f"{shown}: is a directory, not an image", CORRUPT_MEDIA)
    if real.stat().st_size == 0:
        raise MediaError(f"{shown}: empty file (0 bytes)", CORRUPT_MEDIA)
    try:
        with warnings.catch_warnings():
            # Our own cap (checked from the header) replaces PIL's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(real, formats=RASTER_FORMATS)
    except Image.DecompressionBombError as e:
        raise MediaError(f"{shown}: {e}", TOO_LARGE) from None
    except UnidentifiedImageError:
        raise MediaError(
            f"{shown}: cannot read image header (not an image of an allowed raster format: "
            f"{', '.join(RASTER_FORMATS)})",
            CORRUPT_MEDIA,
        ) from None
    except Exception as e:  # PIL raises many types for unreadable headers
        raise MediaError(f"{shown}: cannot read image header ({type(e).__name__}: {e})", CORRUPT_MEDIA) from None


def _check_header(im: Image.Image, shown: str, max_pixels: int) -> tuple[int, int]:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise MediaError(f"{shown}: zero-size image ({w}x{h})", CORRUPT_MEDIA)
    if w * h > max_pixels:
        raise MediaError(f"{shown}: header claims {w}x{h} = {w * h} pixels, over the {max_pixels}-pixel cap", TOO_LARGE)
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block is not a reason to refuse the pixels
        orientation = None
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


def image_size(path: str, roots: Sequence[str | os.PathLike], max_pixels: int = 64_000_000) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only (no decode)."""
    real = resolve_path(path, roots)
    with _open(real, path) as im:
        return _check_header(im, path, max_pixels)


def load_image(
    path: str,
    roots: Sequence[str | os.PathLike],
    max_pixels: int = 64_000_000,
    resize_max_pixels: int | None = None,
) -> Image.Image:
    """Decode an image: confined path, bomb cap, EXIF orientation applied, RGB.

    Args:
        path: media path from the data (relative to a root, or absolute inside one).
        roots: the image roots.
        max_pixels: images whose header claims more pixels are refused (decompression bomb).
        resize_max_pixels: when set, larger images are downscaled (aspect kept) to at most
            this many pixels. Boxes stay in original pixels; normalise them by the original
            size (``image_size``), which the downscaled image shares the aspect ratio of.

    Raises:
        MediaError: with ``kind`` missing_media, outside_root, too_large or corrupt_media.
    """
    real = resolve_path(path, roots)
    with _open(real, path) as im:
        _check_header(im, path, max_pixels)
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            out = im.convert("RGB")
        except MediaError:
            raise
        except Exception as e:  # truncated data, bad chunks, unsupported modes
            raise MediaError(f"{path}: cannot decode image ({type(e).__name__}: {e})", CORRUPT_MEDIA) from None
    return bound_pixels(out, resize_max_pixels)


def bound_pixels(im: Image.Image, max_pixels: int | None) -> Image.Image:
    """``im`` downscaled (aspect kept, bicubic) to at most ``max_pixels`` pixels; None: as is."""
    if max_pixels is None or im.width * im.height <= max_pixels:
        return im
    scale = (max_pixels / (im.width * im.height)) ** 0.5
    return im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.Resampling.BICUBIC)


def load_sample_images(
    sample: Sample,
    roots: Sequence[str | os.PathLike],
    max_pixels: int = 64_000_000,
    resize_max_pixels: int | None = None,
    min_crop_size: int = 4,
) -> list[Image.Image]:
    """The images of ``sample`` in ``Sample.image_parts`` order, crops included.

    A tool response with ``source`` + ``box`` is cropped from the full-resolution original
    (before any ``resize_max_pixels`` bound), so a crop keeps the detail it was asked for.
    """
    from vlm_train.tools.crop import crop

    cache: dict[str, Image.Image] = {}

    def original(path: str) -> Image.Image:
        if path not in cache:
            cache[path] = load_image(path, roots, max_pixels)
        return cache[path]

    out = []
    for p in sample.image_parts():
        if p.type == "tool_response" and p.source and p.box is not None:
            out.append(bound_pixels(crop(original(p.source), p.box, min_crop_size), resize_max_pixels))
        else:
            out.append(bound_pixels(original(p.media or ""), resize_max_pixels))
    return out
