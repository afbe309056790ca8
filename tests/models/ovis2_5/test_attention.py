"""Packed attention: block-diagonal sdpa equals per-segment attention; varlen kernels on CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlm_train.models.ovis2_5.attention import block_diagonal_mask, packed_attention


def _per_segment(q, k, v, lens):
    outs = []
    for qs, ks, vs in zip(q.split(lens), k.split(lens), v.split(lens), strict=True):
        o = F.scaled_dot_product_attention(qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1))
        outs.append(o.transpose(0, 1))
    return torch.cat(outs)


def test_block_diagonal_mask():
    m = block_diagonal_mask(torch.tensor([0, 2, 5]), 5)
    assert m[:2, :2].all() and m[2:, 2:].all()
    assert not m[:2, 2:].any() and not m[2:, :2].any()


def test_sdpa_packed_equals_per_segment():
    torch.manual_seed(0)
    lens = [4, 16, 1, 9]
    q, k, v = (torch.randn(sum(lens), 3, 8) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()])
    out = packed_attention(q, k, v, cu, backend="sdpa")
    torch.testing.assert_close(out, _per_segment(q, k, v, lens))


def test_varlen_needs_cuda_on_cpu_auto_uses_sdpa():
    q = k = v = torch.randn(6, 2, 8)
    out = packed_attention(q, k, v, torch.tensor([0, 6]))  # auto on CPU -> sdpa, no error
    assert out.shape == (6, 2, 8)
    with pytest.raises(ValueError, match="unknown packed attention backend"):
        packed_attention(q, k, v, torch.tensor([0, 6]), backend="flash")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="varlen kernels exist only on CUDA")
def test_varlen_equals_sdpa_on_cuda():
    torch.manual_seed(0)
    lens = [64, 196, 4, 100]
    q, k, v = (torch.randn(sum(lens), 16, 72, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device="cuda")
    varlen = packed_attention(q, k, v, cu, backend="varlen")
    ref = _per_segment(q.float(), k.float(), v.float(), lens)
    torch.testing.assert_close(varlen.float(), ref, rtol=2e-2, atol=2e-2)
