"""Preprocessing: smart_resize bounds and rounding, patch layout, videos, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.models.ovis2_5.conftest import noise_image
from vlm_train.models.ovis2_5.processor import Ovis2_5Processor, patchify, smart_resize

MIN, MAX = 448 * 448, 1792 * 1792


@pytest.mark.parametrize(
    ("h", "w", "expected_hw", "tokens"),
    [
        (448, 448, (448, 448), 196),
        (1792, 1792, (1792, 1792), 3136),
        (2000, 2000, (1792, 1792), 3136),  # shrunk by sqrt(area ratio), floored
        (10, 10, (448, 448), 196),  # tiny: short side to 32, then grown to min_pixels
        (20, 1000, (64, 3168), 198),  # side < 32 -> short side 32, long side scaled, grown to min
        (32, 10000, (32, 6400), 200),  # aspect ratio clamped to 200
        (4000, 100, (4000, 96), 375),  # tall: rounded to multiples of 32, area within bounds
    ],
)
def test_smart_resize_table(h, w, expected_hw, tokens):
    got = smart_resize(h, w, 32, MIN, MAX)
    assert got == expected_hw
    assert got[0] % 32 == 0 and got[1] % 32 == 0
    assert MIN <= got[0] * got[1] <= MAX or min(h, w) * 200 < max(h, w)
    assert (got[0] // 16) * (got[1] // 16) // 4 == tokens


def test_smart_resize_rejects_empty_image():
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10)


def _real_processor(tok=None):
    return Ovis2_5Processor(tokenizer=tok, min_pixels=MIN, max_pixels=MAX)


def test_preprocess_image_grid_and_rows():
    proc = _real_processor()
    vis = proc.preprocess_image(noise_image(448, 448))
    assert vis.grid_thw == (1, 28, 28)
    assert tuple(vis.pixel_values.shape) == (784, 768)
    assert vis.num_atoms == 196
    # Normalisation is (x / 255 - 0.5) / 0.5, so values lie in [-1, 1].
    assert vis.pixel_values.min() >= -1.0 and vis.pixel_values.max() <= 1.0


def test_patch_layout_is_merge_block_order():
    # Each pixel carries its own coordinates, so the layout can be read back from the rows.
    p, s, gh, gw = 4, 2, 4, 6
    H, W = gh * p, gw * p
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    frame = np.stack([yy, xx, np.zeros_like(yy)]).astype(np.float32)[None]
    rows, grid = patchify(frame, p, s)
    assert grid == (1, gh, gw)
    rows = rows.reshape(-1, 3, p, p)
    # Row k: block (bi, bj) = divmod(k // 4, gw // 2), inner (di, dj) = divmod(k % 4, 2).
    for k in range(gh * gw):
        bi, bj = divmod(k // 4, gw // s)
        di, dj = divmod(k % 4, s)
        top, left = (bi * s + di) * p, (bj * s + dj) * p
        assert rows[k, 0, 0, 0] == top and rows[k, 1, 0, 0] == left
        assert rows[k, 0, p - 1, 0] == top + p - 1 and rows[k, 1, 0, p - 1] == left + p - 1


def test_video_frames_take_first_frame_size():
    proc = _real_processor()
    frames = [noise_image(640, 360, seed=0)] + [noise_image(300 + 10 * i, 500, seed=i) for i in range(1, 8)]
    vis = proc.preprocess_video(frames)
    h, w = smart_resize(360, 640, 32, MIN, proc.video_max_pixels)
    assert vis.is_video
    assert vis.grid_thw == (8, h // 16, w // 16)
    assert vis.pixel_values.shape == (8 * (h // 16) * (w // 16), 768)
    assert vis.num_atoms == 8 * (h // 16) * (w // 16) // 4


def test_resize_is_bilinear_to_exact_size():
    proc = _real_processor()
    img = Image.new("RGB", (500, 300), (255, 0, 0))
    vis = proc.preprocess_image(img)
    h, w = smart_resize(300, 500, 32, MIN, MAX)
    assert vis.grid_thw == (1, h // 16, w // 16)
    rows = vis.pixel_values.view(-1, 3, 16, 16)
    assert torch.allclose(rows[:, 0], torch.ones(1)) and torch.allclose(rows[:, 1], -torch.ones(1))


def test_save_load_roundtrip(tiny_dir, processor, tmp_path):
    processor.save_pretrained(tmp_path)
    again = Ovis2_5Processor.from_pretrained(tmp_path, max_pixels=2048)
    assert again.patch_size == processor.patch_size == 8
    assert again.min_pixels == processor.min_pixels
    assert again.max_pixels == 2048  # override wins over the file
    assert again.tokenizer.encode("<think>") == processor.tokenizer.encode("<think>")


def test_official_checkpoint_dir_uses_official_defaults(tiny_dir, tmp_path):
    # An official directory has a tokenizer and config.json but not our processor JSON.
    import json
    import shutil

    for f in tiny_dir.iterdir():
        if f.name != "ovis2_5_processor.json":
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3}))
    proc = Ovis2_5Processor.from_pretrained(tmp_path)
    assert (proc.min_pixels, proc.max_pixels) == (448 * 448, 1792 * 1792)
    assert proc.patch_size == 8  # read from config.json's vit_config
    assert proc.resample == "bicubic"


def test_unknown_processor_key_is_named(tiny_dir, tmp_path):
    import json
    import shutil

    shutil.copytree(tiny_dir, tmp_path / "ck")
    f = tmp_path / "ck" / "ovis2_5_processor.json"
    d = json.loads(f.read_text())
    d["max_pixelz"] = 1
    f.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="max_pixelz"):
        Ovis2_5Processor.from_pretrained(tmp_path / "ck")


@pytest.mark.parametrize("h,w", [(1, 1_000_000), (1_000_000, 1), (1, 5000), (31, 100_000), (3, 70_000), (20_000, 20_000)])
@pytest.mark.parametrize("max_pixels", [1792 * 1792, 896 * 896, 64 * 64])
def test_smart_resize_stays_within_max_pixels(h, w, max_pixels):
    """A side held at the 32-pixel floor used to leave the other one long: 1x1,000,000 -> 57M px."""
    hh, ww = smart_resize(h, w, max_pixels=max_pixels)
    assert hh * ww <= max_pixels and hh % 32 == 0 and ww % 32 == 0 and min(hh, ww) >= 32
