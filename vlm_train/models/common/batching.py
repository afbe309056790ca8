"""Input-builder steps every family takes the same way (docs/design.md, "Adding a family").

A builder renders a sample to text with learned character spans, expands each vision
placeholder to the family's token run, tokenises once, labels the tokens inside the learned
spans, and pads the rows into a batch. The rendering and the vision tensors are the family's;
the steps here carry no family knowledge, so the label rule and the padding have one home.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from vlm_train.data.sample import Sample
from vlm_train.models.base import IGNORE

Span = tuple[int, int]


def as_sample(s: Sample | dict | str) -> Sample:
    """A Sample from a Sample, its JSON, its dict, or a dataset row ``{"sample": json}``."""
    if isinstance(s, Sample):
        return s
    if isinstance(s, str):
        return Sample.from_json(s)
    if "sample" in s:  # a dataset row
        return as_sample(s["sample"])
    return Sample.from_dict(s)


def find_all(text: str, needle: str) -> list[int]:
    """Start offsets of every non-overlapping ``needle`` in ``text``."""
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + len(needle))
    return out


def expand_placeholders(
    text: str, placeholder: str, runs: Callable[[int], str], spans: Sequence[Span]
) -> tuple[str, list[Span]]:
    """Replace the k-th ``placeholder`` in ``text`` by ``runs(k)`` (the family's vision-token
    run, as its processor expands it) and move the learned ``spans`` with the text."""
    pieces, shifts, pos = [], [], 0
    for k, idx in enumerate(find_all(text, placeholder)):
        rep = runs(k)
        pieces += [text[pos:idx], rep]
        shifts.append((idx, len(rep) - len(placeholder)))
        pos = idx + len(placeholder)
    pieces.append(text[pos:])
    moved = []
    for a, b in spans:
        d = sum(delta for at, delta in shifts if at < a)
        moved.append((a + d, b + d))
    return "".join(pieces), moved


def span_labels(ids: Sequence[int], offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[int]:
    """The label rule: a token is learned (label = its id) when its characters lie wholly in a
    learned span (sorted, disjoint); every other token, empty ones included, is IGNORE."""
    labels, j = [IGNORE] * len(ids), 0
    for t, (s, e) in enumerate(offsets):
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        if j < len(spans) and spans[j][0] <= s < e <= spans[j][1]:
            labels[t] = ids[t]
    return labels


def pad_rows(
    rows: Sequence[tuple[Sequence[int], Sequence[int] | None]], pad_id: int, for_generation: bool
) -> dict[str, Any]:
    """``input_ids``, ``attention_mask`` and (training only) ``labels`` of (ids, labels) rows.

    Training pads on the right (labels IGNORE); generation pads on the left, so every row's
    new tokens append at the same column.
    """
    width = max(len(ids) for ids, _ in rows)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels_t = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        n = len(ids)
        cols = slice(width - n, width) if for_generation else slice(0, n)
        ids_t[i, cols] = torch.tensor(ids, dtype=torch.long)
        mask[i, cols] = 1
        if not for_generation and labels is not None:
            labels_t[i, cols] = torch.tensor(labels, dtype=torch.long)
    batch: dict[str, Any] = {"input_ids": ids_t, "attention_mask": mask}
    if not for_generation:
        batch["labels"] = labels_t
    return batch


def tool_call_args(part: Any, size: tuple[int, int] | None, coords: Any) -> dict[str, Any]:
    """A crop call's JSON arguments: the box in the family's ``coords`` convention relative to
    the ``size`` (W, H) of the image it refers to, then the label when there is one."""
    args: dict[str, Any] = {}
    if part.box is not None and size is not None:
        args["bbox_2d"] = coords.to_values(part.box, *size)
    if part.label:
        args["label"] = part.label
    return args


def vision_safe_cut(ids: Sequence[int], limit: int, start_id: int, end_id: int) -> tuple[int, int]:
    """Where to truncate ``ids`` to at most ``limit`` tokens without splitting a vision span
    (``start_id`` ... ``end_id``): (cut, number of whole spans kept). A span the limit would
    split is dropped whole, so the pixels kept are exactly the first spans'."""
    opened = [i for i in range(limit) if ids[i] == start_id]
    closed = sum(1 for i in range(limit) if ids[i] == end_id)
    if len(opened) > closed:
        return opened[-1], closed
    return limit, len(opened)
