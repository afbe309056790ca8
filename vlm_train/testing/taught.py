"""A tiny checkpoint taught one crop-then-answer conversation, so that real weights (not a
scripted generate) call the crop tool and answer with a box: the demo, inference and their
tests run on it. A few dozen optimiser steps on CPU; the result is an ordinary checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from vlm_train.config import ModelConfig
from vlm_train.data.sample import Box, GroundingTarget, Message, Part, Sample, image, text
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig

PHRASE = "the red square"
QUESTION = f"Where is {PHRASE}? Crop to look closer, then answer with a box."
SIZE = (96, 64)
TARGET = Box(56.0, 16.0, 88.0, 48.0)
CALL_BOX = Box(48.0, 8.0, 96.0, 56.0)


def scene(path: Path) -> Path:
    """A grey image with a red square at ``TARGET`` and a blue disc on the left."""
    im = Image.new("RGB", SIZE, (235, 235, 235))
    d = ImageDraw.Draw(im)
    d.rectangle(TARGET.as_list(), fill=(220, 30, 30))
    d.ellipse([8, 20, 32, 44], fill=(30, 60, 220))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def lesson(family: object, image_name: str) -> Sample:
    """The conversation the model learns: a crop call, the crop, the boxed answer."""
    answer = family.grounding_answer(PHRASE, TARGET, *SIZE)
    return Sample("lesson", [
        Message("user", [image(image_name), text(QUESTION)]),
        Message("assistant", [Part("tool_call", tool="crop", box=CALL_BOX, media=image_name)]),
        Message("tool", [Part("tool_response", source=image_name, box=CALL_BOX)]),
        Message("assistant", [text(answer)]),
    ], image_sizes=[SIZE], targets=[GroundingTarget(PHRASE, TARGET)])


def teach(family_name: str, base: Path, out: Path, steps: int = 80, lr: float = 3e-3) -> Path:
    """Write to ``out`` the tiny model ``base`` after ``steps`` steps on ``lesson`` (+ its scene)."""
    family = get_family(family_name)
    root = out / "lesson"
    scene(root / "scene.png")
    model, processor = family.load(ModelConfig(family=family_name, path=str(base)), dtype=torch.float32)
    batch = family.make_inputs(processor, InputsConfig(image_roots=(str(root),)))([lesson(family, "scene.png")])
    batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    processor.save_pretrained(str(out))
    return out
