"""The crop tool: boxes in original pixels, clipping, minimum size, tool responses re-made from the source."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlm_train.data.media import MediaError
from vlm_train.data.sample import Box, Part
from vlm_train.tools.crop import crop, crop_response, response_image


def _gradient(w=50, h=40) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w)[None, :]
    a[..., 1] = np.arange(h)[:, None]
    return Image.fromarray(a)


def test_crop_takes_original_pixels():
    out = np.asarray(crop(_gradient(), Box(10, 5, 20, 25)))
    assert out.shape == (20, 10, 3)
    assert out[0, 0, 0] == 10 and out[0, 0, 1] == 5 and out[-1, -1, 0] == 19 and out[-1, -1, 1] == 24


def test_crop_clips_and_grows_tiny_boxes():
    assert crop(_gradient(), Box(-10, -10, 30, 100)).size == (30, 40)
    assert crop(_gradient(), Box(49, 39, 49.5, 39.5), min_size=4).size == (4, 4)
    assert crop(_gradient(), Box(20, 10, 10, 5)).size == (10, 5)  # inverted corners are sorted


def test_response_image_from_source_and_media(tmp_path):
    _gradient().save(tmp_path / "src.png")
    _gradient(8, 8).save(tmp_path / "given.png")
    part = crop_response("src.png", Box(10, 5, 20, 25))
    got = np.asarray(response_image(part, [tmp_path]))
    assert got.shape == (20, 10, 3) and got[0, 0, 0] == 10
    assert response_image(Part("tool_response", media="given.png"), [tmp_path]).size == (8, 8)
    with pytest.raises(MediaError, match="outside the image roots"):
        response_image(crop_response("../src.png", Box(0, 0, 4, 4)), [tmp_path / "sub"])
    with pytest.raises(MediaError, match="neither"):
        response_image(Part("tool_response", text="Name"), [tmp_path])
