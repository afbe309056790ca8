"""Can the quick start's tiny model learn to pick a shape by its colour word? A plain-loop diagnostic.

    python benchmarks/colour_referring.py [--scenes colour2|all] [--steps 2000] [--lr 1e-3]
        [--text-first] [--train-vision] [--freeze-projector] [--pool 16000] [--eval-every 500] [key=value ...]

The learning benchmark (benchmarks/learning.py) finds that after SFT, on two-shape scenes of
one kind told apart only by colour, about half of the boxes that hit a shape hit the named one:
a random pick. This isolates that: it builds the benchmark's tiny model (the quick start's
config, the tower pretrained 1,000 steps), trains it in a plain single-process loop (the
family's input builder, plain token cross-entropy without the job's coordinate term, AdamW,
warm-up then cosine, batch 16, 2 threads) on
``--scenes colour2`` (only those two-shape colour scenes, so the colour word is the one thing
to learn) or ``all`` (the benchmark's 1-3-shape mix), and every ``--eval-every`` steps greedy-
decodes 80 held-out two-shape colour scenes and prints Acc@0.5 and ``named <n>/<hits>``: of
the boxes that hit some shape (IoU >= 0.5), how many hit the named one. A model that reads the
colour word reaches a share near 1; a random pick, 1/2.

``--text-first`` puts the phrase before the image (data.synthetic.text_first); ``--train-vision``
trains the tower too; ``--freeze-projector`` trains the language model only; ``--pool`` sets how
many scenes are generated for ``colour2`` training (about a quarter are kept). Extra ``key=value`` arguments override the config (model.tiny.layers=4).
Takes 4-7 min for 2,000 steps on a 2-core machine.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", choices=("colour2", "all"), default="colour2")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--text-first", action="store_true")
    ap.add_argument("--train-vision", action="store_true")
    ap.add_argument("--freeze-projector", action="store_true")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--pool", type=int, default=16000,
                    help="scenes generated for training (colour2 keeps about a quarter of them)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import torch

    from vlm_train.config import load_config
    from vlm_train.data.synthetic import generate
    from vlm_train.eval.grounding import evaluate
    from vlm_train.launch.base_model import materialise_model
    from vlm_train.models import get_family
    from vlm_train.models.base import InputsConfig
    from vlm_train.models.common import freeze_groups

    torch.set_num_threads(2)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="colour_referring_"))
    cfg = load_config(REPO / "configs/debug/internvl_tiny_pipeline.yaml",
                      [f"run.storage_path={work}", "run.name=diag", "model.tiny.vision_pretrain_steps=1000",
                       *args.overrides])
    family = get_family(cfg.model.family)
    cfg = materialise_model(cfg, family)
    model, processor = family.load(cfg.model, dtype=torch.float32)
    freeze_groups(model, family.module_groups, {"vision": not args.train_vision, "projector": args.freeze_projector})

    def colour2(s) -> bool:
        return s.meta["n_shapes"] == 2 and s.meta["mode"] == "colour"

    text = {"answer": family.grounding_answer, "prompt": family.grounding_prompt, "text_first": args.text_first}
    only = args.scenes == "colour2"
    # A quarter of the 1-2-shape scenes are two-shape colour scenes: 16,000 give about 4,000.
    train = generate(work / "train", args.pool if only else 4096, 0, 128, 2 if only else 3, "grounding", **text)
    train = [s for s in train if colour2(s)] if only else train
    held = [s for s in generate(work / "eval", 600, 1_000_000, 128, 2, "grounding", **text) if colour2(s)][:80]
    print(f"{len(train)} training samples ({args.scenes}), {len(held)} held-out two-shape colour scenes", flush=True)

    builder = family.make_inputs(processor, InputsConfig(image_roots=(str(work / "train"),), max_length=512))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup, rng, t0 = 20, random.Random(0), time.perf_counter()
    model.train()
    for i in range(args.steps):
        cos = 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, args.steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = args.lr * (i / warmup if i < warmup else cos)
        loss = model(**builder([train[rng.randrange(len(train))] for _ in range(args.batch)])).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (i + 1) % args.eval_every == 0 or i + 1 == args.steps:
            res = evaluate(model, processor, family, held, [str(work / "eval")])
            # The evaluation's own named-shape share: every held-out scene has two shapes.
            named = round(res.named_shape_share * res.shape_hits)
            print(f"step {i + 1}: loss {loss.item():.3f}, held-out Acc@0.5 {res.acc:.3f}, named {named}/{res.shape_hits}"
                  f" ({res.named_shape_share:.2f}), {time.perf_counter() - t0:.0f} s", flush=True)
            model.train()


if __name__ == "__main__":
    main()
