"""Data pipeline throughput: samples/s on one core at 448² and 1344² images.

Compares, on the same synthetic grounding samples (JPEG, with texture so decoding costs what
a photo costs):

- data layer: read the canonical JSONL + decode (media.load_image: confinement, bomb cap,
  EXIF, RGB) + resize to InternVL's tile grid, cut 448² tiles (+ thumbnail), normalise
  + tokenize the chat text;
- HF processor: decode + ``InternVLProcessor`` called per sample (its own tiling,
  normalisation, tokenisation and image-token expansion).

Run: ``python benchmarks/data_pipeline.py [--n 16] [--reps 3]``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from vlm_train.data import formats  # noqa: E402
from vlm_train.data.check import render_for_count  # noqa: E402
from vlm_train.data.media import load_image  # noqa: E402
from vlm_train.data.synthetic import generate  # noqa: E402

TILE = 448
MAX_TILES = 12
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def make_data(root: Path, n: int, size: int) -> Path:
    """Synthetic samples at ``size``², re-saved as textured JPEGs; returns the JSONL path."""
    samples = generate(root, n, seed=size, image_size=size, max_shapes=3)
    rng = np.random.default_rng(size)
    for s in samples:
        part = s.messages[0].content[0]
        png = root / part.media
        arr = np.asarray(Image.open(png), np.int16) + rng.integers(-25, 25, (size, size, 3))
        jpg = png.with_suffix(".jpg")
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(jpg, quality=90)
        png.unlink()
        part.media = str(jpg.relative_to(root))
    path = root / f"data_{size}.jsonl"
    formats.write(samples, path, "canonical")
    return path


def grid_for(w: int, h: int) -> tuple[int, int]:
    """InternVL's tile grid (docs/models.md, "InternVL3.5"): closest aspect ratio among 1..MAX_TILES tiles."""
    ratios = sorted(
        {
            (i, j)
            for n in range(1, MAX_TILES + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if i * j <= MAX_TILES
        },
        key=lambda r: r[0] * r[1],
    )
    aspect, best, best_diff = w / h, (1, 1), float("inf")
    for i, j in ratios:
        diff = abs(aspect - i / j)
        if diff < best_diff or (diff == best_diff and w * h > 0.5 * TILE * TILE * i * j):
            best, best_diff = (i, j), diff
    return best


# Normalisation folded into one multiply-add: (x / 255 - mean) / std = x * SCALE - OFFSET.
SCALE = (1.0 / (255.0 * STD)).astype(np.float32)
OFFSET = (MEAN / STD).astype(np.float32)


def tiles(im: Image.Image) -> np.ndarray:
    """[tiles, 3, 448, 448] float32, normalised; tiles row-major, thumbnail last."""
    cols, rows = grid_for(*im.size)
    size = (TILE * cols, TILE * rows)
    big = np.asarray(im if im.size == size else im.resize(size, Image.Resampling.BICUBIC))
    out = [big[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] for r in range(rows) for c in range(cols)]
    if len(out) > 1:
        out.append(np.asarray(im.resize((TILE, TILE), Image.Resampling.BICUBIC)))
    arr = np.stack(out).astype(np.float32)  # uint8 until here: one conversion, in place after
    arr *= SCALE
    arr -= OFFSET
    return arr.transpose(0, 3, 1, 2)


def run_ours(path: Path, tokenizer) -> tuple[int, int]:
    n = n_tiles = 0
    for s in formats.read(path, "canonical"):
        root = [s.meta["image_root"]]
        im = load_image(s.messages[0].content[0].media, root)
        t = tiles(im)
        tokenizer(render_for_count(s), add_special_tokens=False)
        n += 1
        n_tiles += t.shape[0]
    return n, n_tiles


def run_hf(path: Path, processor) -> tuple[int, int]:
    samples = [s for s in formats.read(path, "canonical")]
    n = n_tiles = 0
    for s in samples:
        im = load_image(s.messages[0].content[0].media, [s.meta["image_root"]])
        msgs = [
            {
                "role": m.role,
                "content": [
                    {"type": "image"} if p.type == "image" else {"type": "text", "text": p.text} for p in m.content
                ],
            }
            for m in s.messages
        ]
        text = processor.apply_chat_template(msgs, tokenize=False)
        out = processor(text=text, images=[im], return_tensors="pt")
        n += 1
        n_tiles += out["pixel_values"].shape[0]
    return n, n_tiles


def breakdown(path: Path, tokenizer) -> str:
    """Milliseconds per sample of each data-layer stage (where the time goes)."""
    t0 = time.perf_counter()
    samples = [s for s in formats.read(path, "canonical")]
    t1 = time.perf_counter()
    ims = [load_image(s.messages[0].content[0].media, [s.meta["image_root"]]) for s in samples]
    t2 = time.perf_counter()
    for im in ims:
        tiles(im)
    t3 = time.perf_counter()
    for s in samples:
        tokenizer(render_for_count(s), add_special_tokens=False)
    t4 = time.perf_counter()
    ms = [1000 * (b - a) / len(samples) for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4))]
    return "read {:.2f} ms, decode {:.1f} ms, resize+tile+normalise {:.1f} ms, tokenize {:.2f} ms".format(*ms)


def bench(fn, *args, reps: int) -> tuple[float, float]:
    fn(*args)  # warm-up: caches, lazy imports
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        n, n_tiles = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return n / best, n_tiles / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from vlm_train.models.internvl.tiny import build_processor

    processor = build_processor(None, TILE, max_tiles=MAX_TILES)
    # InternVL-sized tile token count, so the expanded prompt is as long as the real model's.
    processor.image_seq_length = 256
    print(
        f"one core (torch threads 1), {a.n} samples, best of {a.reps}; InternVL tiling {TILE}² tiles, max {MAX_TILES} + thumbnail"
    )
    print(
        f"{'image':>7} | {'data layer: read+decode+resize+tokenize':>40} | {'HF processor per sample (+decode)':>34} | tiles/img"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in (448, 1344):
            path = make_data(Path(tmp) / str(size), a.n, size)
            ours, t_ours = bench(run_ours, path, processor.tokenizer, reps=a.reps)
            hf, t_hf = bench(run_hf, path, processor, reps=a.reps)
            print(f"{size:>6}² | {ours:>31.1f} samples/s | {hf:>25.1f} samples/s | {t_ours:.0f} / {t_hf:.0f}")
            print(f"{'':>7}   data layer per sample: {breakdown(path, processor.tokenizer)}")


if __name__ == "__main__":
    main()
