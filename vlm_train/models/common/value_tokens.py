"""Initialise the rows of number tokens from their values (for tiny models trained from scratch).

A tokenizer with one token per coordinate value ("0".."1000" for boxes in the ``1000`` convention) gives a
random model 1001 unrelated embeddings: nothing tells it that 412 lies next to 413, so every
value must be learned on its own and boxes stay far from the image for thousands of steps.
Writing sinusoidal features of the value (as Transformer position encodings, Vaswani et al.
2017, https://arxiv.org/abs/1706.03762) into both the input embedding and the output (lm_head)
rows makes neighbouring values similar from step 0, so a hidden state that points near a value
already scores its neighbours high. The family decides which tokens are values
(``Family.value_tokens``); this module knows nothing about families.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def sinusoidal_features(values: torch.Tensor, dim: int, max_value: float) -> torch.Tensor:
    """(len(values), dim) features: sin/cos of the value at ``dim // 2`` geometric frequencies.

    The slowest frequency turns half a circle over ``max_value`` (so 0 and max_value differ
    most), the fastest a quarter circle per 4 units (neighbours still differ).
    """
    k = max(1, dim // 2)
    freqs = torch.exp(torch.linspace(math.log(math.pi / max_value), math.log(math.pi / 8), k))
    angles = values.float()[:, None] * freqs[None]
    feats = torch.cat([angles.sin(), angles.cos()], dim=1)
    if feats.shape[1] < dim:
        feats = torch.cat([feats, torch.zeros(len(values), dim - feats.shape[1])], dim=1)
    return feats[:, :dim]


@torch.no_grad()
def init_value_rows(model: torch.nn.Module, value_tokens: Mapping[int, int]) -> int:
    """Overwrite the input and output embedding rows of ``value_tokens`` (id -> value).

    Rows are scaled to the standard deviation of the matrix they go into, so the rest of the
    random initialisation keeps its balance. Returns the number of rows written per matrix.
    """
    if not value_tokens:
        return 0
    ids = torch.tensor(list(value_tokens), dtype=torch.long)
    vals = torch.tensor([value_tokens[i] for i in value_tokens], dtype=torch.float)
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != mats[0].data_ptr():
        mats.append(out.weight)
    for w in mats:
        feats = sinusoidal_features(vals, w.shape[1], float(vals.max().clamp(min=1)))
        w[ids] = (feats / feats.std() * w.std()).to(w.dtype)
    return len(ids)
