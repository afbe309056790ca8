"""Packed-row attention on sdpa that skips the masked blocks: ``sdpa_segments``.

transformers turns packed ``position_ids`` into a block-diagonal mask, but sdpa with a dense
mask still computes every query-key pair of the row, so a row of R tokens costs R² where its
samples need only the sum of n². On CPU (no flash-attn) that makes long packed rows slower
than padded batches of short samples. This attention implementation reads the collator's
``cu_seq_lens_q`` and runs causal sdpa per segment (a sample or a padding tail), which is what
flash-attn's varlen kernel does on GPU. Without ``cu_seq_lens_q`` (padded batches, generation
with a cache) it is plain sdpa with transformers' own masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "sdpa_segments"


def segment_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                 cu_seq_lens_q: torch.Tensor | None = None, **kwargs):
    """[B, H, L, D] query (key/value with their own head count) -> ([B, L, H, D], None)."""
    if cu_seq_lens_q is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    b, h, n, d = query.shape
    q = query.transpose(0, 1).reshape(1, h, b * n, d)
    k = key.transpose(0, 1).reshape(1, key.shape[1], b * n, d)
    v = value.transpose(0, 1).reshape(1, value.shape[1], b * n, value.shape[-1])
    out = query.new_empty(b * n, h, value.shape[-1])
    cu = cu_seq_lens_q.tolist()
    for start, end in zip(cu[:-1], cu[1:], strict=True):
        o = F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], dropout_p=dropout,
                                           scale=scaling, is_causal=True, enable_gqa=h != key.shape[1])
        out[start:end] = o[0].transpose(0, 1)
    return out.view(b, n, h, -1), None


AttentionInterface.register(NAME, segment_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # padded batches keep their masks


def use_segment_attention(model) -> bool:
    """Switch a model that runs on sdpa to ``sdpa_segments``; True if it did."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(NAME)
    return True
