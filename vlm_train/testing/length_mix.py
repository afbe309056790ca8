"""A realistic length mix of SFT samples, for packing tests and benchmarks.

The distribution (deterministic by seed):

- images per sample: 1-4, uniform; each image a random-noise PNG with sides drawn uniformly
  from ``image_sides`` (so tile counts / patch grids differ between images);
- answer length: log-uniform between ``answer_words`` (words of 1-2 tokens each), so most
  answers are short and a few run to hundreds of tokens, as in instruction data;
- ``tool_fraction`` (10%) of samples are multi-turn with a crop tool call: the assistant
  calls crop on a box of the first image, the crop comes back as a tool turn (an input,
  never learned) and the assistant answers after it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image

from vlm_train.data.sample import Box, Message, Part, Sample, image, text

WORDS = ("the", "red", "circle", "left", "of", "a", "blue", "square", "shape", "is", "near", "top", "corner",
         "green", "triangle", "below", "small", "large", "image", "shows", "two", "three", "and", "with")


def _noise(path: Path, w: int, h: int, rng: random.Random) -> None:
    Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3)).save(path)


def length_mix(
    root: str | Path,
    n: int,
    seed: int = 0,
    *,
    max_images: int = 4,
    image_sides: tuple[int, int] = (32, 160),
    answer_words: tuple[int, int] = (5, 400),
    tool_fraction: float = 0.1,
) -> list[Sample]:
    """``n`` samples whose images are written under ``root`` (paths relative to it)."""
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lo, hi = math.log(answer_words[0]), math.log(answer_words[1])
    out = []
    for i in range(n):
        k = rng.randint(1, max_images)
        names, sizes = [], []
        for j in range(k):
            w, h = rng.randint(*image_sides), rng.randint(*image_sides)
            name = f"s{seed}_{i}_{j}.png"
            _noise(root / name, w, h, rng)
            names.append(name)
            sizes.append((w, h))
        words = int(round(math.exp(rng.uniform(lo, hi))))
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        user = Message("user", [*(image(nm) for nm in names), text("Describe what you see.")])
        if rng.random() < tool_fraction:
            w, h = sizes[0]
            box = Box(0, 0, max(4, w // 2), max(4, h // 2))
            msgs = [
                user,
                Message("assistant", [text("Let me look closer."), Part("tool_call", tool="crop", box=box)]),
                Message("tool", [Part("tool_response", source=names[0], box=box)]),
                Message("assistant", [text(answer)]),
            ]
        else:
            msgs = [user, Message("assistant", [text(answer)])]
        out.append(Sample(f"mix{seed}-{i}", msgs, image_sizes=sizes))
    return out
