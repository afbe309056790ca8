"""Pretrain a tiny model's vision tower and projector on synthetic shapes, at build time.

Why: every real VLM starts from a pretrained vision encoder; a tiny one built offline starts
from random weights, and measured in this project (docs/models.md, "Tiny models on CPU") that
is what keeps its boxes fixed: the language model learns boxes from image tokens that already
carry them in about 1,600 samples, but from a random tower it predicts the same box for every
image after 14,000. This module is the tiny stand-in for the encoder's pretraining: a dense
task on every image token (is a shape under it; if so, its box, colour, kind and size),
learned through a linear head that is thrown away. The language model never sees this task;
SFT still has to learn to read the named shape's tokens and write its box as text.

The scenes come from the synthetic generator under a seed namespace of their own, so no
training or held-out sample is ever among them. Deterministic for a given seed and thread
count. Family-neutral: the family passes how to turn images into pixels, pixels into image
tokens (``(n, rows * cols, hidden)``, raster order), and which parameters to train.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from vlm_train.data.synthetic import COLOURS, KINDS, PATTERNS, SIZE_RANGES, Scene, draw, make_scene, render_scene

SIZES = tuple(SIZE_RANGES)
# Head outputs per token: presence logit, box (4, in units of the image side), colour, kind, size
# (and, with ``patterns``, the pattern).
N_OUT = 1 + 4 + len(COLOURS) + len(KINDS) + len(SIZES)
# The box term is an L1 in image-side units (about 0.05 once learned); x5 keeps it level with
# the classification terms.
BOX_WEIGHT = 5.0


@dataclass
class PretrainReport:
    steps: int
    presence_acc: float
    box_l1_px: float  # mean absolute edge error on the canvas, in pixels
    colour_acc: float
    kind_acc: float
    size_acc: float
    pattern_acc: float | None = None

    def line(self) -> str:
        return (f"vision pretraining: {self.steps} steps; held-out presence {self.presence_acc:.3f}, "
                f"box edge error {self.box_l1_px:.1f} px, colour {self.colour_acc:.3f}, kind {self.kind_acc:.3f}, "
                f"size {self.size_acc:.3f}" + ("" if self.pattern_acc is None else f", pattern {self.pattern_acc:.3f}"))


def scenes(seed: int, n: int, canvas: int, max_shapes: int, patterns: bool = False) -> list[tuple[Image.Image, Scene]]:
    if not patterns:
        return [render_scene(random.Random(f"vlm_train.vision_pretrain/{seed}/{i}"), canvas, max_shapes)
                for i in range(n)]
    out = []
    for i in range(n):
        rng = random.Random(f"vlm_train.vision_pretrain/patterns/{seed}/{i}")
        scene = make_scene(rng, canvas, max_shapes)
        for s in scene.shapes:  # every shape striped or plain, whatever the scene's phrase
            s.pattern = rng.choice(PATTERNS)
        grey = rng.randint(225, 255)
        out.append((draw(scene, canvas, (grey, grey, grey)), scene))
    return out


def token_targets(scene: Scene, canvas: int, rows: int, cols: int, patterns: bool = False) -> tuple[torch.Tensor, ...]:
    """Per image token (raster order): the shape overlapping its cell most, if any."""
    n = rows * cols
    present, box = torch.zeros(n), torch.zeros(n, 4)
    colour, kind, size, pattern = (torch.full((n,), -100, dtype=torch.long) for _ in range(4))
    cw, ch = canvas / cols, canvas / rows
    for t in range(n):
        r, c = divmod(t, cols)
        x0, y0, x1, y1 = c * cw, r * ch, (c + 1) * cw, (r + 1) * ch
        best, best_area = None, 0.0
        for s in scene.shapes:
            b = s.box
            area = max(0.0, min(x1, b.x2) - max(x0, b.x1)) * max(0.0, min(y1, b.y2) - max(y0, b.y1))
            if area > best_area:
                best, best_area = s, area
        if best is not None:
            b = best.box
            present[t] = 1.0
            box[t] = torch.tensor([b.x1, b.y1, b.x2, b.y2]) / canvas
            colour[t], kind[t], size[t] = list(COLOURS).index(best.colour), KINDS.index(best.kind), SIZES.index(best.size)
            pattern[t] = PATTERNS.index(best.pattern)
    return (present, box, colour, kind, size, pattern) if patterns else (present, box, colour, kind, size)


def _losses(out: torch.Tensor, targets: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    present, box, *classes = targets
    i = 5
    heads = []
    for k in (len(COLOURS), len(KINDS), len(SIZES), len(PATTERNS))[:len(classes)]:
        heads.append(out[..., i:i + k])
        i += k
    mask = present > 0
    pred_box = out[..., 1:5][mask].sigmoid()
    l_box = F.l1_loss(pred_box, box[mask]) if mask.any() else out.sum() * 0
    loss = F.binary_cross_entropy_with_logits(out[..., 0], present) + BOX_WEIGHT * l_box
    accs = []
    for h, t in zip(heads, classes, strict=True):
        loss = loss + F.cross_entropy(h.reshape(-1, h.shape[-1]), t.reshape(-1), ignore_index=-100)
        ok = t >= 0
        accs.append((h.argmax(-1) == t)[ok].float().mean().item() if ok.any() else 0.0)
    stats = {"presence": ((out[..., 0] > 0) == mask).float().mean().item(), "box_l1": l_box.item(),
             "colour": accs[0], "kind": accs[1], "size": accs[2], "pattern": accs[3] if len(accs) > 3 else None}
    return loss, stats


def pretrain_vision(
    pixels: Callable[[list[Image.Image]], torch.Tensor],
    image_tokens: Callable[[torch.Tensor], torch.Tensor],
    params: Iterable[torch.nn.Parameter],
    grid: tuple[int, int],
    hidden: int,
    steps: int,
    seed: int = 0,
    canvas: int = 128,
    max_shapes: int = 3,
    batch: int = 32,
    lr: float = 2e-3,
    pool: int = 4096,
    held_out: int = 256,
    patterns: bool = False,
) -> PretrainReport:
    """Train ``params`` for ``steps`` AdamW steps on the dense shape task; report held-out figures.

    ``pool`` scenes are drawn once and cycled (drawing and preprocessing cost more than a step).
    ``patterns``: shapes are striped or plain at random, and each token also names the pattern.
    """
    rows, cols = grid
    data = scenes(seed, pool + held_out, canvas, max_shapes, patterns)
    pv = pixels([im for im, _ in data])
    targets = [torch.stack(t) for t in zip(*(token_targets(s, canvas, rows, cols, patterns) for _, s in data),
                                            strict=True)]
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, N_OUT + (len(PATTERNS) if patterns else 0))
    with torch.no_grad():
        head.weight.normal_(0.0, hidden ** -0.5, generator=gen)
        head.bias.zero_()
    params = [*params, *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr)
    for step in range(steps):
        lo = (step * batch) % (pool - batch + 1)
        out = head(image_tokens(pv[lo:lo + batch]))
        loss, _ = _losses(out, [t[lo:lo + batch] for t in targets])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        _, st = _losses(head(image_tokens(pv[pool:])), [t[pool:] for t in targets])
    return PretrainReport(steps, st["presence"], st["box_l1"] * canvas, st["colour"], st["kind"], st["size"],
                          st["pattern"])
