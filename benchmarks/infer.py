"""Inference throughput: prompts/s of batched generation vs one prompt at a time, same run.

The same engine (``vlm_train.infer.engine.Engine``: the GRPO rollout code, greedy) answers the
same synthetic grounding prompts with ``batch_size`` 1 and then ``--batch``; each setting runs
``--reps`` times and the best time counts. Every completion runs to ``--max-new-tokens`` (the
random tiny model rarely ends its turn), so both settings generate the same number of tokens.

Run: ``python benchmarks/infer.py [--family internvl] [--n 16] [--batch 8] [--reps 2]``.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from vlm_train.config import InferConfig, JobConfig, ModelConfig
from vlm_train.data import synthetic
from vlm_train.data.sample import prompt_messages
from vlm_train.infer.engine import Engine
from vlm_train.models import get_family


def prompts_per_second(engine: Engine, samples: list, batch: int, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for i in range(0, len(samples), batch):
            engine(samples[i : i + batch])
        best = min(best, time.perf_counter() - t0)
    return len(samples) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--family", default="internvl")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    family = get_family(a.family)
    root = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    model_dir = family.tiny(root / "tiny")
    samples = synthetic.generate(root / "data", a.n, seed=0, answer=family.grounding_answer, prompt=family.grounding_prompt)
    samples = [replace(s, messages=prompt_messages(s.messages), meta={**s.meta, "image_root": str(root / "data")})
               for s in samples]
    cfg = JobConfig()
    cfg.model = ModelConfig(family=a.family, path=str(model_dir), dtype="float32")
    cfg.infer = InferConfig(max_new_tokens=a.max_new_tokens, tools=False)
    engine = Engine(cfg, [str(root / "data")])
    engine(samples[:1])  # warm-up
    one = prompts_per_second(engine, samples, 1, a.reps)
    many = prompts_per_second(engine, samples, a.batch, a.reps)
    print(f"family {a.family}, {a.n} prompts, {a.max_new_tokens} new tokens each, greedy, tiny model, CPU")
    print(f"one at a time : {one:7.2f} prompts/s")
    print(f"batch of {a.batch:<4} : {many:7.2f} prompts/s  ({many / one:.2f}x)")


if __name__ == "__main__":
    main()
