"""Checks shared by end-to-end tests and the quick start: TensorBoard scalars, losses, weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vlm_train.models.base import IGNORE


def tb_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series in the event files under ``logdir``: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def tb_image_tags(logdir: str | Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: list[str] = []
    for f in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"images": 0})
        acc.Reload()
        tags += acc.Tags().get("images", [])
    return tags


def safetensors_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


@torch.no_grad()
def mean_loss(model: Any, batches: list[dict[str, Any]]) -> float:
    """Token-weighted mean cross-entropy of ``model`` over pre-built batches (labels -100 ignored)."""
    model.eval()
    total, n = 0.0, 0
    for b in batches:
        out = model(**b)
        k = int((b["labels"][:, 1:] != IGNORE).sum())
        total += float(out.loss) * k
        n += k
    return total / max(n, 1)
