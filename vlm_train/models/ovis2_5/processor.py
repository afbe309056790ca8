"""Ovis2.5 image/video preprocessing and the processor saved next to a checkpoint (docs/models.md, "Ovis2.5").

Pipeline per visual: ``smart_resize`` to multiples of ``patch_size * hidden_stride`` within
[min_pixels, max_pixels] -> bilinear resize -> rescale 1/255, normalise mean = std = 0.5 ->
patchify into rows of ``C * T * p * p`` values laid out so that every 4 consecutive rows form
one 2x2 merge block. ``grid_thw`` is (frames, h / p, w / p); a visual gives t*h*w/4 atoms.

The processor is our own small class (tokenizer + one JSON file), so loading it needs no
remote code. On an official checkpoint directory, which has no such JSON, the official
defaults are used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin

PROCESSOR_FILE = "ovis2_5_processor.json"
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def smart_resize(
    height: int,
    width: int,
    factor: int = 32,
    min_pixels: int = 448 * 448,
    max_pixels: int = 1792 * 1792,
) -> tuple[int, int]:
    """Target (height, width): multiples of ``factor`` with area in [min_pixels, max_pixels].

    Sides shorter than ``factor`` are first scaled up so the short side equals ``factor``;
    aspect ratios above 200 are clamped to 200. Sides are then rounded to multiples of
    ``factor``; if the area is still out of bounds the original size is scaled by the square
    root of the area ratio, flooring when shrinking and ceiling when growing.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"smart_resize: image size must be positive, got {height}x{width}")
    h, w = float(height), float(width)
    if h < factor or w < factor:
        if h < w:
            w, h = round(factor / h * w), factor
        else:
            h, w = round(factor / w * h), factor
    elif max(h, w) / min(h, w) > 200:
        if h > w:
            h = 200 * w
        else:
            w = 200 * h
    h_bar = max(factor, round(h / factor) * factor)
    w_bar = max(factor, round(w / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar = max(factor, math.floor(h / beta / factor) * factor)
        w_bar = max(factor, math.floor(w / beta / factor) * factor)
        # A side held at ``factor`` (a 1x1,000,000 strip) leaves the other one too long:
        # shorten it, so the bound holds for every input (57M px before this line).
        if h_bar * w_bar > max_pixels and h_bar <= w_bar:
            w_bar = max(factor, max_pixels // h_bar // factor * factor)
        elif h_bar * w_bar > max_pixels:
            h_bar = max(factor, max_pixels // w_bar // factor * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar = math.ceil(h * beta / factor) * factor
        w_bar = math.ceil(w * beta / factor) * factor
    return int(h_bar), int(w_bar)


def patchify(frames_TCHW: np.ndarray, patch: int, stride: int, temporal: int = 1) -> tuple[np.ndarray, tuple[int, int, int]]:
    """[F, C, H, W] normalised frames -> ([t*h*w, C*T*p*p] rows in merge order, (t, h, w))."""
    n, c, height, width = frames_TCHW.shape
    if n % temporal:
        raise ValueError(f"{n} frames is not a multiple of temporal_patch_size {temporal}")
    t, gh, gw = n // temporal, height // patch, width // patch
    x = frames_TCHW.reshape(t, temporal, c, gh // stride, stride, patch, gw // stride, stride, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(t * gh * gw, c * temporal * patch * patch)), (t, gh, gw)


@dataclass
class VisualInputs:
    """One image or video, patchified."""

    pixel_values: torch.Tensor  # [t*h*w, patch_dim], float32
    grid_thw: tuple[int, int, int]
    is_video: bool = False

    @property
    def num_atoms(self) -> int:
        t, h, w = self.grid_thw
        return t * h * w // 4


@dataclass
class Ovis2_5Processor(ProcessorMixin):
    """Tokenizer plus the visual preprocessing settings of one checkpoint.

    A ``ProcessorMixin`` only so trainers (TRL) accept it as a processing class; saving and
    loading are this class's own (tokenizer files + ``ovis2_5_processor.json``).
    """

    tokenizer: Any = field(repr=False)
    patch_size: int = 16
    hidden_stride: int = 2
    temporal_patch_size: int = 1
    min_pixels: int = 448 * 448
    max_pixels: int = 1792 * 1792
    video_max_pixels: int = 896 * 896
    num_frames: int = 8
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    resample: str = "bilinear"
    max_length: int = 4096

    def __post_init__(self):
        if self.resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {self.resample!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    @property
    def factor(self) -> int:
        return self.patch_size * self.hidden_stride

    # ---- pixels -------------------------------------------------------------------------
    def _to_array(self, image: Image.Image, size_hw: tuple[int, int]) -> np.ndarray:
        h, w = size_hw
        img = image.convert("RGB")
        if img.size != (w, h):
            img = img.resize((w, h), _RESAMPLE[self.resample])
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return arr.transpose(2, 0, 1)

    def preprocess_image(self, image: Image.Image, max_pixels: int | None = None) -> VisualInputs:
        """Resize, normalise and patchify one image."""
        size = smart_resize(image.height, image.width, self.factor, self.min_pixels, max_pixels or self.max_pixels)
        rows, grid = patchify(self._to_array(image, size)[None], self.patch_size, self.hidden_stride)
        return VisualInputs(torch.from_numpy(rows), grid)

    def preprocess_video(self, frames: Sequence[Image.Image], max_pixels: int | None = None) -> VisualInputs:
        """All frames take the size computed from the first frame; one grid row per video."""
        if not frames:
            raise ValueError("video with no frames")
        first = frames[0]
        bound = max_pixels or self.video_max_pixels
        size = smart_resize(first.height, first.width, self.factor, min(self.min_pixels, bound), bound)
        arr = np.stack([self._to_array(f, size) for f in frames])
        rows, grid = patchify(arr, self.patch_size, self.hidden_stride, self.temporal_patch_size)
        return VisualInputs(torch.from_numpy(rows), grid, is_video=True)

    # ---- persistence --------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tokenizer"}
        d["image_mean"], d["image_std"] = list(self.image_mean), list(self.image_std)
        return d

    def save_pretrained(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        payload = {"processor_class": "Ovis2_5Processor", **self.settings()}
        (out / PROCESSOR_FILE).write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> Ovis2_5Processor:
        """Load tokenizer + settings; ``overrides`` (e.g. ``max_pixels``) win over the file."""
        from transformers import AutoTokenizer

        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        settings: dict[str, Any] = {}
        own = path / PROCESSOR_FILE
        if own.exists():
            settings = json.loads(own.read_text())
            settings.pop("processor_class", None)
        else:
            settings = _official_settings(path)
        known = {f.name for f in fields(cls)} - {"tokenizer"}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"{own}: unknown keys {sorted(unknown)}")
        settings.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("image_mean", "image_std"):
            if key in settings:
                settings[key] = tuple(settings[key])
        return cls(tokenizer=tokenizer, **settings)


def _official_settings(path: Path) -> dict[str, Any]:
    """Settings for an official checkpoint: its preprocessor_config.json stats, spec bounds."""
    out: dict[str, Any] = {}
    cfg_file = path / "config.json"
    if cfg_file.exists():
        vit = json.loads(cfg_file.read_text()).get("vit_config", {})
        out["patch_size"] = vit.get("patch_size", 16)
        out["hidden_stride"] = vit.get("hidden_stride", 2)
        out["temporal_patch_size"] = vit.get("temporal_patch_size", 1)
    pre = path / "preprocessor_config.json"
    if pre.exists():
        d = json.loads(pre.read_text())
        if "image_mean" in d:
            out["image_mean"] = tuple(d["image_mean"])
        if "image_std" in d:
            out["image_std"] = tuple(d["image_std"])
        # transformers' PIL codes: 2 bilinear, 3 bicubic.
        out["resample"] = {2: "bilinear", 3: "bicubic"}.get(d.get("resample"), "bilinear")
    return out
