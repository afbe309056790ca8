"""Image loading: roots, EXIF orientation, RGB, header-only sizes, downscale bound."""

from __future__ import annotations

import pytest
from PIL import Image

from vlm_train.data.errors import MISSING_MEDIA, OUTSIDE_ROOT
from vlm_train.data.media import MediaError, image_size, load_image, resolve_path


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (40, 20), "blue")
    im.paste(Image.new("RGB", (10, 20), "red"), (0, 0))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    assert image_size("r.jpg", [tmp_path]) == (20, 40)
    out = load_image("r.jpg", [tmp_path])
    assert out.size == (20, 40)
    r, g, b = out.getpixel((10, 2))  # after a clockwise turn the left strip is on top
    assert r > 200 and b < 60


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    ext = "tiff" if mode in ("CMYK", "I;16") else "png"
    Image.new(mode, (8, 6)).save(tmp_path / f"x.{ext}")
    out = load_image(f"x.{ext}", [tmp_path])
    assert out.mode == "RGB" and out.size == (8, 6)


def test_resize_bound_keeps_aspect(tmp_path):
    Image.new("RGB", (400, 200)).save(tmp_path / "big.png")
    out = load_image("big.png", [tmp_path], resize_max_pixels=20000)
    assert out.size == (200, 100)
    assert load_image("big.png", [tmp_path], resize_max_pixels=10**6).size == (400, 200)


def test_roots_in_order_and_absolute_inside(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    Image.new("RGB", (4, 4)).save(b / "x.png")
    assert resolve_path("x.png", [a, b]) == (b / "x.png").resolve()
    assert resolve_path(str(b / "x.png"), [a, b]) == (b / "x.png").resolve()
    with pytest.raises(MediaError) as ei:
        resolve_path(str(b / "x.png"), [a])
    assert ei.value.kind == OUTSIDE_ROOT
    with pytest.raises(MediaError) as ei:
        resolve_path("y.png", [a, b])
    assert ei.value.kind == MISSING_MEDIA
    with pytest.raises(MediaError, match="no image root"):
        resolve_path("x.png", [])


def test_symlink_inside_root_is_fine(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    (tmp_path / "alias.png").symlink_to(tmp_path / "x.png")
    assert load_image("alias.png", [tmp_path]).size == (4, 4)


def test_sample_images_include_crops_from_the_original(tmp_path):
    import numpy as np

    from vlm_train.data.media import load_sample_images
    from vlm_train.data.synthetic import generate

    s = generate(tmp_path, 3, seed=1, kind="toolqa", image_size=128)[0]
    parts = s.image_parts()
    assert [p.type for p in parts] == ["image", "tool_response"]
    full, crop = load_sample_images(s, [tmp_path])
    b = s.targets[0].box
    assert crop.size == (int(b.width), int(b.height))
    assert np.array_equal(np.asarray(crop), np.asarray(full)[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)])
    # the pixel bound applies to each returned image, after cropping from the full original
    small_full, small_crop = load_sample_images(s, [tmp_path], resize_max_pixels=32 * 32)
    assert small_full.size == (32, 32) and small_crop.size == crop.size
    assert s.media("image") == [s.messages[0].content[0].media]  # unchanged older helper


def test_only_raster_formats_are_decoded(tmp_path, monkeypatch):
    """PostScript/EPS (Ghostscript's input) named like a JPEG is a bad image, never decoded;
    a real raster file is accepted whatever its name."""
    from PIL import EpsImagePlugin

    from vlm_train.data.errors import CORRUPT_MEDIA
    from vlm_train.data.validate import Validator

    def ghostscript(*a, **k):
        raise AssertionError("an EPS file reached Ghostscript")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nnewpath 0 0 moveto 16 16 lineto stroke\n%%EOF\n"
    (tmp_path / "x.jpg").write_bytes(eps)
    (tmp_path / "page.png").write_bytes(b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    Image.new("RGB", (6, 4), "blue").save(tmp_path / "really_png.jpg", format="PNG")
    for name in ("x.jpg", "page.png"):
        for read in (image_size, load_image):
            with pytest.raises(MediaError, match="not an image of an allowed raster format") as e:
                read(name, [tmp_path])
            assert e.value.kind == CORRUPT_MEDIA
        v = Validator(roots=[tmp_path], decode=False)
        with pytest.raises(Exception, match="allowed raster format"):
            v.image(name, (str(tmp_path),))
    assert image_size("really_png.jpg", [tmp_path]) == (6, 4)
