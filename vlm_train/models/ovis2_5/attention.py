"""Attention over a packed sequence of images/frames, one segment per frame (docs/models.md, "Ovis2.5").

Every backend computes the same thing: softmax attention restricted to the segments given
by ``cu_seqlens``. On CPU it is sdpa with a block-diagonal boolean mask; on CUDA it is
flash-attn's varlen kernel when the package is installed, otherwise torch's own
``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10, CUDA only).

Shape legend: T = total packed tokens, H = heads, D = head dim, S = segments.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

_HAS_FLASH_ATTN = importlib.util.find_spec("flash_attn") is not None


def block_diagonal_mask(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Boolean [T, T] mask, True where query and key lie in the same segment."""
    seg = torch.bucketize(torch.arange(total, device=cu_seqlens.device), cu_seqlens[1:], right=True)
    return seg[:, None] == seg[None, :]


def sdpa_packed(q_THD: torch.Tensor, k_THD: torch.Tensor, v_THD: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Reference path: one sdpa call over the whole packed sequence with a block-diagonal mask."""
    total = q_THD.shape[0]
    # One segment needs no mask (and a [T, T] mask is the memory cost of this path).
    mask = None if len(cu_seqlens) == 2 else block_diagonal_mask(cu_seqlens, total)
    out_HTD = F.scaled_dot_product_attention(
        q_THD.transpose(0, 1), k_THD.transpose(0, 1), v_THD.transpose(0, 1), attn_mask=mask
    )
    return out_HTD.transpose(0, 1)


def varlen_packed(q_THD: torch.Tensor, k_THD: torch.Tensor, v_THD: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """CUDA path: flash-attn's varlen kernel if installed, else torch's varlen_attn."""
    cu = cu_seqlens.to(torch.int32)
    max_len = int((cu[1:] - cu[:-1]).max())
    if _HAS_FLASH_ATTN:
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q_THD, k_THD, v_THD, cu, cu, max_len, max_len)
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(q_THD, k_THD, v_THD, cu, cu, max_len, max_len)


def packed_attention(
    q_THD: torch.Tensor,
    k_THD: torch.Tensor,
    v_THD: torch.Tensor,
    cu_seqlens: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """Attention within each segment of a packed sequence.

    Args:
        q_THD, k_THD, v_THD: packed queries, keys, values [T, H, D].
        cu_seqlens: [S + 1] cumulative segment lengths starting at 0.
        backend: ``auto`` (varlen kernel on CUDA with half precision, sdpa otherwise), ``sdpa``
            or ``varlen``.

    Returns:
        [T, H, D] attention output.
    """
    if backend == "auto":
        # The varlen kernels only exist for CUDA and 16-bit inputs.
        use_varlen = q_THD.is_cuda and q_THD.dtype in (torch.float16, torch.bfloat16)
        backend = "varlen" if use_varlen else "sdpa"
    if backend == "varlen":
        return varlen_packed(q_THD, k_THD, v_THD, cu_seqlens)
    if backend == "sdpa":
        return sdpa_packed(q_THD, k_THD, v_THD, cu_seqlens)
    raise ValueError(f"unknown packed attention backend {backend!r} (auto, sdpa, varlen)")
