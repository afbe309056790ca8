"""Data pipeline throughput: samples/s on one core at 448² and 1344² images.

Compares, on the same synthetic grounding samples (JPEG, with texture so decoding costs what
a photo costs):

- data layer: read the canonical JSONL + decode (media.load_image: confinement, bomb cap,
  EXIF, RGB) + resize to InternVL's tile grid, cut 448² tiles (+ thumbnail), normalise
  + tokenize the chat text;
- HF processor: decode + ``InternVLProcessor`` called per sample (its own tiling,
  normalisation, tokenisation and image-token expansion).

Then the training collator (vlm_train.train.collator.SFTCollator over InternVL's input
builder: decode, tile, tokenise, labels, padding or packing) in samples/s per core, next to
the demand of a training step: the samples/s a GPU consumes at a given tokens/s (the
``--gpu-tokens-per-s`` figures, e.g. from benchmarks/gpu_check.py on the target GPU) and the
samples/s this machine's CPU training step consumed in the same run (a tiny model). The
ratio is the number of dataloader workers (``sft.dataloader_num_workers``) one GPU needs so
that batches are never late.

Run: ``python benchmarks/data_pipeline.py [--n 16] [--reps 3] [--gpu-tokens-per-s 10000 40000]``.
A benchmark, not a test.
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
from vlm_train.models.base import InputsConfig  # noqa: E402

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


def collator_rate(path: Path, processor, packed: bool, reps: int) -> tuple[float, float]:
    """(samples/s on one core, tokens per sample) of the SFT collator, micro-batches of 4."""
    from vlm_train.models import get_family
    from vlm_train.train.collator import SFTCollator

    fam = get_family("internvl")
    samples = list(formats.read(path, "canonical"))
    builder = fam.make_inputs(processor, InputsConfig(image_roots=(samples[0].meta["image_root"],), max_length=16384))
    col = SFTCollator(builder, fam.merge_visuals, max_length=16384, packed=packed)
    rows = [{"sample": s.to_json()} for s in samples]

    def run():
        tokens = 0
        for i in range(0, len(rows), 4):
            tokens += int(col(rows[i : i + 4])["real_tokens"].sum())
        return len(rows), tokens

    run()
    best, tokens = float("inf"), 0
    for _ in range(reps):
        t0 = time.perf_counter()
        _, tokens = run()
        best = min(best, time.perf_counter() - t0)
    return len(rows) / best, tokens / len(rows)


def cpu_step_demand(tmp: Path, n: int = 8) -> float:
    """Samples/s a CPU training step of the tiny InternVL consumes (forward, backward, AdamW)."""
    from vlm_train.config import ModelConfig
    from vlm_train.models import get_family
    from vlm_train.testing.length_mix import length_mix
    from vlm_train.testing.sft_trainer import local_sft_trainer
    from vlm_train.train.collator import SFTCollator

    fam = get_family("internvl")
    model, proc = fam.load(ModelConfig(path=str(fam.tiny(tmp / "tiny")), attn_implementation="sdpa"), dtype=torch.float32)
    rows = [{"sample": s.to_json()} for s in length_mix(tmp / "mix", n, seed=0)]
    col = SFTCollator(fam.make_inputs(proc, InputsConfig(image_roots=(str(tmp / "mix"),), max_length=4096)),
                      fam.merge_visuals, max_length=4096, packed=True)
    batches = [col(rows[i : i + 4]) for i in range(0, n, 4)]
    trainer = local_sft_trainer(model, proc, col, rows, tmp / "out", max_length=4096)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t0 = time.perf_counter()
    for b in batches:
        trainer.compute_loss(model, dict(b)).backward()
        opt.step()
        opt.zero_grad()
    return n / (time.perf_counter() - t0)


def demand_table(rates: dict[int, tuple[float, float]], gpu_tokens: list[float], cpu_demand: float) -> None:
    import math

    print("\nworkers one GPU needs = demand (samples/s) / collator samples/s per core, rounded up")
    print(f"{'image':>7} | {'collator/core':>13} | {'tokens/sample':>13} | " + " | ".join(f"{t:>7.0f} tok/s GPU" for t in gpu_tokens))
    for size, (rate, tps) in rates.items():
        cells = []
        for t in gpu_tokens:
            need = t / tps
            cells.append(f"{need:>5.1f}/s:{math.ceil(need / rate):>3}w")
        print(f"{size:>6}² | {rate:>11.1f}/s | {tps:>13.0f} | " + " | ".join(f"{c:>17}" for c in cells))
    print(f"this machine's CPU training step (tiny InternVL, packed): {cpu_demand:.2f} samples/s consumed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gpu-tokens-per-s", type=float, nargs="+", default=[10000.0, 40000.0],
                    help="training tokens/s of one GPU to size workers for (measure with gpu_check.py)")
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
    rates: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (448, 1344):
            path = make_data(Path(tmp) / str(size), a.n, size)
            ours, t_ours = bench(run_ours, path, processor.tokenizer, reps=a.reps)
            hf, t_hf = bench(run_hf, path, processor, reps=a.reps)
            print(f"{size:>6}² | {ours:>31.1f} samples/s | {hf:>25.1f} samples/s | {t_ours:.0f} / {t_hf:.0f}")
            print(f"{'':>7}   data layer per sample: {breakdown(path, processor.tokenizer)}")
            rates[size] = collator_rate(path, processor, packed=True, reps=a.reps)
            padded, _ = collator_rate(path, processor, packed=False, reps=1)
            print(f"{'':>7}   SFT collator (4 samples per batch): packed {rates[size][0]:.1f} samples/s, "
                  f"padded {padded:.1f} samples/s, {rates[size][1]:.0f} tokens per sample")
        demand_table(rates, a.gpu_tokens_per_s, cpu_step_demand(Path(tmp) / "step"))


if __name__ == "__main__":
    main()
