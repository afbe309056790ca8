"""SigLIP2 NaViT vision tower of Ovis2.5 (docs/models.md, "Ovis2.5").

All images and video frames of a batch are packed into one sequence of patches; attention is
restricted to each frame (``cu_seqlens``). Patches arrive already in 2x2-merge order (the
processor's layout), so positions (absolute table and rotary) are generated in that order.

Module names follow the official checkpoints so ``vision_model.*`` keys load unchanged.

Shape legend: N = packed patches (all frames), C = hidden size, H = heads, D = head dim,
P = patch_dim (C_in * T * p * p).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer

from vlm_train.models.ovis2_5.attention import packed_attention
from vlm_train.models.ovis2_5.config import Siglip2NavitConfig


@functools.lru_cache(maxsize=256)
def _bicubic_matrix(src: int, dst: int) -> torch.Tensor:
    """[dst, src] matrix of 1-D bicubic resampling (align_corners=False), float32 on CPU.

    torch's 2-D bicubic resize is separable, so resizing a table T [src_h, src_w] to [h, w]
    equals ``A_h @ T @ A_w.T``. Caching these small matrices per size is the per-(h, w) PE
    cache: it stays differentiable in the table (training, ZeRO-3) unlike caching the result.
    """
    eye = torch.eye(src, dtype=torch.float32).view(src, 1, src, 1)
    cols = F.interpolate(eye, size=(dst, 1), mode="bicubic", align_corners=False)
    return cols.view(src, dst).T.contiguous()


def merge_order(h: int, w: int, stride: int) -> torch.Tensor:
    """Permutation putting a row-major (h, w) grid into stride x stride merge-block order."""
    idx = torch.arange(h * w).view(h // stride, stride, w // stride, stride)
    return idx.permute(0, 2, 1, 3).reshape(-1)


def frame_seqlens(grid_thws: torch.Tensor) -> torch.Tensor:
    """[S + 1] cumulative patch counts, one segment per frame (int32)."""
    per_frame = torch.repeat_interleave(grid_thws[:, 1] * grid_thws[:, 2], grid_thws[:, 0])
    return F.pad(per_frame.cumsum(0, dtype=torch.int32), (1, 0))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Siglip2NavitEmbeddings(nn.Module):
    """Patch embedding of patchified rows plus the interpolated learned position table."""

    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        if config.temporal_patch_size != 1:
            # The released Conv2d weight [C, 3, p, p] has no temporal extent.
            raise NotImplementedError(f"vit_config.temporal_patch_size must be 1, got {config.temporal_patch_size}")
        self.config = config
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.side = config.image_size // config.patch_size
        self.position_embedding = nn.Embedding(self.side**2, config.hidden_size)

    def position_table(self, h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
        """[h * w, C] absolute embeddings for an (h, w) patch grid, in merge order."""
        # Read through the module's forward (not .weight) so ZeRO-3 gathers the partitioned table.
        table = self.position_embedding(torch.arange(self.side**2, device=device))
        a_h = _bicubic_matrix(self.side, h).to(table.device)
        a_w = _bicubic_matrix(self.side, w).to(table.device)
        grid = table.float().view(self.side, self.side, -1)
        resized = torch.einsum("ia,abc,jb->ijc", a_h, grid, a_w).reshape(h * w, -1)
        order = merge_order(h, w, self.config.hidden_stride).to(table.device)
        return resized[order].to(table.dtype)

    def forward(self, pixel_values_NP: torch.Tensor, grid_thws: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        weight = self.patch_embedding.weight
        patches = pixel_values_NP.to(weight.dtype).view(-1, cfg.num_channels, cfg.patch_size, cfg.patch_size)
        x_NC = self.patch_embedding(patches).flatten(1)
        if cfg.preserve_original_pe:
            pos = [self.position_table(h, w, x_NC.device).repeat(t, 1) for t, h, w in grid_thws.tolist()]
            x_NC = x_NC + torch.cat(pos, dim=0)
        return x_NC


class VisionRotary(nn.Module):
    """2-D rotary embedding in the Qwen2.5-VL style (head_dim / 4 frequencies per axis)."""

    def __init__(self, head_dim: int, stride: int, theta: float):
        super().__init__()
        self.dim = head_dim // 2
        self.stride = stride
        self.theta = theta

    def forward(self, grid_thws: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # inv_freq is recomputed (not a buffer) because the checkpoint does not hold it and a
        # non-persistent buffer would be left uninitialised by meta-device loading.
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device=device) / self.dim))
        pos = []
        for t, h, w in grid_thws.tolist():
            order = merge_order(h, w, self.stride).to(device)
            hw = torch.stack([order // w, order % w], dim=-1)
            pos.append(hw.repeat(t, 1))
        pos_N2 = torch.cat(pos, dim=0).float()
        freqs = torch.cat([pos_N2[:, :1] * inv_freq, pos_N2[:, 1:] * inv_freq], dim=-1)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


class Siglip2NavitAttention(nn.Module):
    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        c = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)
        self.backend = "auto"

    def forward(self, x_NC: torch.Tensor, cu_seqlens: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None):
        n = x_NC.shape[0]
        q = self.q_proj(x_NC).view(n, self.num_heads, self.head_dim)
        k = self.k_proj(x_NC).view(n, self.num_heads, self.head_dim)
        v = self.v_proj(x_NC).view(n, self.num_heads, self.head_dim)
        if rope is not None:
            cos, sin = (r.unsqueeze(1) for r in rope)
            dtype = q.dtype
            qf, kf = q.float(), k.float()
            q = (qf * cos + rotate_half(qf) * sin).to(dtype)
            k = (kf * cos + rotate_half(kf) * sin).to(dtype)
        out = packed_attention(q, k, v, cu_seqlens, backend=self.backend)
        return self.out_proj(out.reshape(n, -1))


class Siglip2NavitMLP(nn.Module):
    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Siglip2NavitEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = Siglip2NavitAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = Siglip2NavitMLP(config)

    def forward(self, x_NC: torch.Tensor, cu_seqlens: torch.Tensor, rope) -> torch.Tensor:
        x_NC = x_NC + self.self_attn(self.layer_norm1(x_NC), cu_seqlens, rope)
        return x_NC + self.mlp(self.layer_norm2(x_NC))


class Siglip2NavitEncoder(nn.Module):
    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        self.layers = nn.ModuleList(Siglip2NavitEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x_NC: torch.Tensor, cu_seqlens: torch.Tensor, rope) -> torch.Tensor:
        for layer in self.layers:
            x_NC = layer(x_NC, cu_seqlens, rope)
        return x_NC


class Siglip2NavitTransformer(nn.Module):
    """``vision_model``: embeddings, encoder and the (unused) post layernorm."""

    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        if config.full_attention_layers is not None:
            # Window attention is only reachable with fullatt_block_indexes set; the releases
            # leave it null (every layer full), which is all this implementation supports.
            raise NotImplementedError("vit_config.fullatt_block_indexes (window attention) is not supported")
        self.config = config
        self.embeddings = Siglip2NavitEmbeddings(config)
        self.encoder = Siglip2NavitEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary = VisionRotary(config.head_dim, config.hidden_stride, config.rope_theta)

    def forward(self, pixel_values_NP: torch.Tensor, grid_thws: torch.Tensor) -> torch.Tensor:
        """Return the last block's output [N, C] (Ovis reads it *before* post_layernorm)."""
        x_NC = self.embeddings(pixel_values_NP, grid_thws)
        cu_seqlens = frame_seqlens(grid_thws).to(x_NC.device)
        rope = self.rotary(grid_thws, x_NC.device) if self.config.use_rope else None
        return self.encoder(x_NC, cu_seqlens, rope)


class Siglip2NavitModel(nn.Module):
    """``visual_tokenizer.vit``: holds ``vision_model`` so checkpoint keys match."""

    def __init__(self, config: Siglip2NavitConfig):
        super().__init__()
        self.config = config
        self.vision_model = Siglip2NavitTransformer(config)
        # Never used in the forward (see above); frozen so optimizers and ZeRO never wait for
        # a gradient that cannot come.
        self.vision_model.post_layernorm.requires_grad_(False)

    def forward(self, pixel_values_NP: torch.Tensor, grid_thws: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values_NP, grid_thws)

    def set_attention_backend(self, backend: str) -> None:
        for layer in self.vision_model.encoder.layers:
            layer.self_attn.backend = backend

