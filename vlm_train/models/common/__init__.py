"""Helpers shared by every family (attention choice, dtype, freezing, LoRA)."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch


def has_cuda() -> bool:
    return torch.cuda.is_available()


def resolve_attn(choice: str) -> str:
    """auto -> flash_attention_2 when flash-attn is importable on a GPU, else sdpa."""
    if choice != "auto":
        return choice
    if has_cuda() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_dtype(choice: str) -> torch.dtype:
    if choice == "auto":
        return torch.bfloat16 if has_cuda() else torch.float32
    return getattr(torch, choice)


def freeze_groups(model: Any, groups: dict[str, list[str]], freeze: dict[str, bool]) -> dict[str, int]:
    """Set requires_grad=False on parameters whose names start with a frozen group's prefixes.

    Returns the number of parameters frozen per group (for the log).
    """
    counts = {}
    for group, on in freeze.items():
        if not on:
            continue
        prefixes = tuple(groups.get(group, []))
        if not prefixes:
            raise ValueError(f"model.freeze.{group}: this family has no {group!r} module group")
        n = 0
        for name, p in model.named_parameters():
            if name.startswith(prefixes):
                p.requires_grad_(False)
                n += 1
        counts[group] = n
    return counts

