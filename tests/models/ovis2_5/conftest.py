"""Shared fixtures: one tiny Ovis2.5 checkpoint per session, images, real configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ovis2_5"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from vlm_train.models.ovis2_5 import FAMILY

    return FAMILY.tiny(tmp_path_factory.mktemp("ovis_tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    from vlm_train.models.ovis2_5.modeling import Ovis2_5

    return Ovis2_5.from_pretrained(tiny_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def processor(tiny_dir):
    from vlm_train.models.ovis2_5.processor import Ovis2_5Processor

    return Ovis2_5Processor.from_pretrained(tiny_dir)


def real_config(size: str) -> dict:
    return json.loads((FIXTURES / f"config_{size}.json").read_text())


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(arr)
