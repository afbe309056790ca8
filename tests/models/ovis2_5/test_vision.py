"""Vision tower: packed attention per frame, PE interpolation and order, 2-D rotary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlm_train.models.ovis2_5.config import Siglip2NavitConfig
from vlm_train.models.ovis2_5.vision import Siglip2NavitModel, VisionRotary, merge_order


def _vit(seed: int = 0) -> Siglip2NavitModel:
    torch.manual_seed(seed)
    cfg = Siglip2NavitConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=64, patch_size=8)
    vit = Siglip2NavitModel(cfg).eval()
    for p in vit.parameters():  # default init leaves LayerNorms at identity; randomise all
        torch.nn.init.normal_(p, std=0.2)
    return vit


def test_packed_sequence_equals_each_image_alone():
    vit = _vit()
    grids = torch.tensor([[1, 4, 6], [1, 8, 2], [3, 2, 2]])  # two images and a 3-frame video
    n = [int(t * h * w) for t, h, w in grids.tolist()]
    pixels = torch.randn(sum(n), 3 * 8 * 8)
    with torch.no_grad():
        packed = vit(pixels, grids)
        parts = []
        for chunk, g in zip(pixels.split(n), grids, strict=True):
            t, h, w = g.tolist()
            # A video's frames attend separately: running them one by one must agree too.
            frames = chunk.split(h * w)
            parts += [vit(f, torch.tensor([[1, h, w]])) for f in frames]
    torch.testing.assert_close(packed, torch.cat(parts), rtol=1e-5, atol=1e-5)


def test_position_table_is_bicubic_then_merge_order():
    vit = _vit()
    emb = vit.vision_model.embeddings
    table = emb.position_embedding.weight.detach()
    for h, w in [(4, 6), (12, 10), (8, 8), (2, 2)]:
        grid = table.view(8, 8, -1).permute(2, 0, 1)[None]
        ref = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
        ref = ref.reshape(h // 2, 2, w // 2, 2, -1).permute(0, 2, 1, 3, 4).reshape(h * w, -1)
        torch.testing.assert_close(emb.position_table(h, w).detach(), ref, rtol=1e-5, atol=1e-5)


def test_position_table_is_differentiable_in_the_table():
    vit = _vit()
    emb = vit.vision_model.embeddings
    emb.position_table(6, 4).sum().backward()
    assert emb.position_embedding.weight.grad is not None
    assert emb.position_embedding.weight.grad.abs().sum() > 0


def test_merge_order():
    assert merge_order(2, 4, 2).tolist() == [0, 1, 4, 5, 2, 3, 6, 7]


def test_rotary_positions_follow_merge_order():
    rot = VisionRotary(head_dim=16, stride=2, theta=10000.0)
    cos, sin = rot(torch.tensor([[1, 2, 4]]), torch.device("cpu"))
    assert cos.shape == (8, 16)
    inv = 1.0 / (10000.0 ** (torch.arange(0, 8, 2).float() / 8))
    # Patch 4 in merge order is grid cell (row 0, col 2).
    row, col = 0, 2
    expected = torch.cat([row * inv, col * inv, row * inv, col * inv])
    torch.testing.assert_close(cos[4], expected.cos())
    torch.testing.assert_close(sin[4], expected.sin())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="varlen kernels exist only on CUDA")
def test_vit_varlen_backend_matches_sdpa_on_cuda():
    vit = _vit().cuda().to(torch.bfloat16)
    grids = torch.tensor([[1, 4, 6], [1, 8, 2], [3, 2, 2]])
    pixels = torch.randn(int((grids[:, 0] * grids[:, 1] * grids[:, 2]).sum()), 192, device="cuda")
    with torch.no_grad():
        vit.set_attention_backend("sdpa")
        ref = vit(pixels, grids)
        vit.set_attention_backend("varlen")
        out = vit(pixels, grids)
    torch.testing.assert_close(out.float(), ref.float(), rtol=3e-2, atol=3e-2)
