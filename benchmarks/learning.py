"""Does the pipeline learn grounding, and does GRPO with the crop tool add to SFT? Several seeds.

    .venv/bin/python benchmarks/learning.py [--seeds 0 1 2] [--sft-steps 2200] [--sft-lr 1e-3] [--grpo-steps 150]
        [--grpo-lr 3e-5] [--tool off|on|both] [--task shapes|pattern] [--vision-pretrain-steps 1000]
        [--image-first] [--train-projector] [--set KEY=VALUE ...]

Runs configs/debug/internvl_tiny_pipeline.yaml (the quick start's job) longer, with 1-3 shapes
per image (``--max-shapes``; the quick start has one), once per seed
(model init, data and training all seeded), with the crop tool off (direct-answer SFT data, no
crop calls in GRPO) by default, on with ``--tool on`` (SFT data that crops first, calls live in
GRPO), or both, the same SFT and GRPO steps. Unlike the quick start, SFT trains the language
model only (the pretrained projector stays frozen with the tower) and the phrase comes before
the image (``--train-projector`` and ``--image-first`` undo either): with the projector trained,
the tiny model did not learn the colour word in any budget measured (docs/models.md, "What hid the colour").
The defaults are the settings measured there: on a 2-core AMD EPYC, 9-10 min per seed without
the tool and 14 min with it. ``--task pattern`` swaps the shapes for a task where the crop pays
(striped and plain twins in one quadrant of a 256 px image, stripes the 64 px view cannot
resolve; docs/models.md, "A task where the crop pays"): 16 min with the tool, 11 without.
Prints held-out Acc@0.5 and mean IoU before SFT, after SFT and after GRPO, Acc@0.5 by number
of shapes, the random-shape baseline (a perfect localiser that boxes a random shape of the
image) and the named-shape share on 2- and 3-shape images (of predictions that hit some shape,
the share that hit the named one: a random pick scores 1/2 and 1/3). Then the checks:

- (a) after SFT: named-shape share on 2-3 shapes >= 0.8 and Acc@0.5 above the random baseline;
- (b) after GRPO: Acc@0.5 above SFT's in every seed, and the mean gain above twice its
  standard error;
- tool on vs off: mean Acc@0.5 after GRPO of the two, and which wins.

Writes ``learning.json`` (every report) and ``learning.png`` (held-out Acc@0.5 over training
steps, SFT then GRPO, one colour per seed and tool setting: the whole held-out set after each
stage, and the stages' ``eval_steps`` curve on their first held-out samples) to ``--storage``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("base", "sft", "grpo")


def run(seed: int, tool: bool, args) -> dict:
    from vlm_train.config import load_config
    from vlm_train.launch.pipeline import run_pipeline

    over = [
        f"run.storage_path={args.storage}", f"run.seed={seed}",
        f"model.tiny.seed={seed}", f"data.synthetic.seed={seed}", f"data.synthetic.n={args.n_train}",
        f"data.synthetic.n_eval={args.n_eval}", f"data.synthetic.max_shapes={args.max_shapes}", f"sft.max_steps={args.sft_steps}", f"sft.save_steps={args.sft_steps}",
        f"grpo.max_steps={args.grpo_steps}", f"grpo.save_steps={max(1, args.grpo_steps)}",
        f"grpo.learning_rate={args.grpo_lr}", f"grpo.num_generations={args.num_generations}",
        f"grpo.temperature={args.temperature}", f"grpo.beta={args.beta}",
    ]
    if args.targets_per_image != 1:  # several samples per picture, each naming another shape
        over.append(f"data.synthetic.targets_per_image={args.targets_per_image}")
    # The settings under which the tiny model reads the colour word (docs/models.md, "What hid the
    # colour"): only the language model trains, so the pretrained image tokens keep their colour
    # directions, and the phrase comes first, so the image tokens can attend to it.
    over.append(f"sft.learning_rate={args.sft_lr}")
    if not args.image_first:
        over.append("data.synthetic.text_first=true")
    if not args.train_projector:
        over.append("model.freeze.projector=true")  # the tower is frozen by the config
    if args.task == "pattern":
        # Striped and plain twins in one quadrant of a 256 px canvas seen as one 64 px view: the
        # stripes vanish in the view and show in a crop of the quadrant (docs/models.md, "A task
        # where the crop pays"); the tower's pretraining includes stripes. With the tool on every
        # SFT sample crops the quadrant. The reward is the answer's (IoU + box validity) either
        # way: a quadrant overlaps a small shape at IoU ~0.1, which the region reward calls a miss.
        # The policy's completion budget: the call and the answer take about 55 tokens (the crop's
        # turn rides on top, vlm_train/train/rollout.py); 128 leaves slack for a longer answer.
        over += ["data.synthetic.image_size=256", "data.synthetic.modes=[pattern]", "data.synthetic.min_shapes=2",
                 "model.tiny.vision_pretrain_patterns=true", "grpo.max_completion_length=128"]
        if tool:
            over += ["data.synthetic.crop_fraction=1.0", "rewards.weights={iou: 1.0, box_valid: 0.1}"]
    over += args.set  # ablations of any other key (model.tiny.layers=4, grpo.max_completion_length=96, ...)
    if args.vision_pretrain_steps is not None:  # the tower must tell kinds apart before SFT can name them
        over.append(f"model.tiny.vision_pretrain_steps={args.vision_pretrain_steps}")
    if not tool:  # the same budget without the tool: direct answers only, no calls, no region reward
        over += ["data.synthetic.kind=grounding", "tools.max_calls=0", "rewards.weights={iou: 1.0, box_valid: 0.1}"]
    # One run directory per setting: the same command again reuses its finished runs, other
    # settings get their own (a run directory refuses a changed job).
    name = f"learning-seed{seed}" + ("" if tool else "-notool") + "-" + hashlib.sha1(" ".join(over).encode()).hexdigest()[:8]
    cfg = load_config(REPO / "configs/debug/internvl_tiny_pipeline.yaml", [*over, f"run.name={name}"])
    t0 = time.perf_counter()
    report = run_pipeline(cfg).report
    report["_seconds"] = time.perf_counter() - t0
    report["_steps"] = {"base": 0, "sft": args.sft_steps, "grpo": args.sft_steps + args.grpo_steps}
    return report


def named(report: dict, stage: str, n_shapes: str) -> tuple[float | None, int]:
    """The eval report's named-shape share on ``n_shapes``-shape images and the predictions it
    counts (those that hit some shape): a share of 9 hits moves by 0.11 per sample."""
    by = report.get(stage, {}).get("eval", {}).get("by_shapes", {}).get(n_shapes, {})
    return by.get("named_shape_share"), int(by.get("shape_hits") or 0)


def plot(reports: dict[tuple[int, bool], dict], out: Path) -> None:
    """A line plot with PIL (no plotting dependency): Acc@0.5 against training step per run."""
    from PIL import Image, ImageDraw

    W, H, L, B, T, R = 640, 400, 60, 40, 20, 170
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    xmax = max(r["_steps"]["grpo"] for r in reports.values()) or 1
    ymax = max(0.1, max(r.get(st, {}).get("eval", {}).get("acc", 0) or 0 for r in reports.values() for st in STAGES),
               max((e["heldout/acc@0.5"] for r in reports.values() for st in STAGES for e in r.get(st, {}).get("heldout", [])),
                   default=0))
    ymax = math.ceil(ymax * 10) / 10

    def xy(step: float, acc: float) -> tuple[float, float]:
        return L + step / xmax * (W - L - R), H - B - acc / ymax * (H - B - T)

    d.line([xy(0, 0), xy(xmax, 0)], fill="black")
    d.line([xy(0, 0), xy(0, ymax)], fill="black")
    for i in range(6):
        y = ymax * i / 5
        d.text((5, xy(0, y)[1] - 6), f"{y:.2f}", fill="black")
        s = xmax * i / 5
        d.text((xy(s, 0)[0] - 10, H - B + 5), f"{s:.0f}", fill="black")
    d.text((L, H - 15), "training step (SFT, then GRPO)", fill="black")
    d.text((L, 3), "held-out Acc@0.5 (dots: whole set after each stage; thin: first samples every eval_steps)",
           fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for k, ((seed, tool), r) in enumerate(sorted(reports.items())):
        pts = [xy(r["_steps"][st], r[st]["eval"]["acc"]) for st in STAGES if "eval" in r.get(st, {})]
        c = colours[k % len(colours)]
        # While training: every eval_steps on the first few held-out samples (noisy, thin line).
        curve = [xy(r["_steps"]["base"], r["base"]["eval"]["acc"])] if "eval" in r.get("base", {}) else []
        for st, offset in (("sft", 0), ("grpo", r["_steps"]["sft"])):
            curve += [xy(offset + e["step"], e["heldout/acc@0.5"]) for e in r.get(st, {}).get("heldout", [])]
        if len(curve) > 1:
            d.line(curve, fill=c, width=1)
        if len(pts) > 1:
            d.line(pts, fill=c, width=2) if tool else _dashed(d, pts, c)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        d.text((W - R + 10, T + 16 * k), f"seed {seed} tool {'on' if tool else 'off'}", fill=c)
    sft_x = xy(max(r["_steps"]["sft"] for r in reports.values()), 0)[0]
    d.line([(sft_x, T), (sft_x, H - B)], fill="#aaaaaa")
    im.save(out)


def _dashed(d, pts, colour) -> None:
    for (x1, y1), (x2, y2) in zip(pts, pts[1:], strict=False):
        n = max(1, int(math.hypot(x2 - x1, y2 - y1) / 6))
        for i in range(0, n, 2):
            a, b = i / n, min(1.0, (i + 1) / n)
            d.line([(x1 + (x2 - x1) * a, y1 + (y2 - y1) * a), (x1 + (x2 - x1) * b, y1 + (y2 - y1) * b)], fill=colour, width=2)


def _share(share: float | None, hits: int) -> str:
    return f"{'-' if share is None else f'{share:.2f}'}/{hits}".rjust(8)


def _f(v, w: int, p: int = 3) -> str:
    return f"{v:>{w}.{p}f}" if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else f"{'-':>{w}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sft-steps", type=int, default=2200)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--image-first", action="store_true", help="the image before the phrase, as the families' prompts")
    ap.add_argument("--train-projector", action="store_true", help="train the projector in SFT too (the quick start does)")
    ap.add_argument("--grpo-steps", type=int, default=150)
    ap.add_argument("--grpo-lr", type=float, default=3e-5)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--n-train", type=int, default=4096)
    # The quick start shows one shape per image; this benchmark measures telling the named shape
    # from others, so it runs 1-3 shapes unless told otherwise.
    ap.add_argument("--max-shapes", type=int, default=3)
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--targets-per-image", type=int, default=1, help="data.synthetic.targets_per_image (training split)")
    # Longer than the quick start's 500: with several shapes the tower must also tell kinds apart.
    ap.add_argument("--vision-pretrain-steps", type=int, default=1000, help="model.tiny.vision_pretrain_steps")
    ap.add_argument("--tool", choices=("on", "off", "both"), default="off")
    ap.add_argument("--task", choices=("shapes", "pattern"), default="shapes",
                    help="shapes: the 1-3-shape colour/size/relation mix; pattern: striped and plain twins "
                         "that only a crop tells apart (256 px images, 2-3 shapes)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further config overrides, for ablations")
    ap.add_argument("--storage", default=str(REPO / "runs" / "benchmarks"))
    args = ap.parse_args()

    tools = {"on": [True], "off": [False], "both": [True, False]}[args.tool]
    reports = {(s, t): run(s, t, args) for t in tools for s in args.seeds}
    print(f"\nheld-out Acc@0.5 / mean IoU (n_eval={args.n_eval}, sft {args.sft_steps} steps at lr {args.sft_lr}, grpo {args.grpo_steps} steps, "
          f"grpo lr {args.grpo_lr}, k={args.num_generations}, T={args.temperature}, beta={args.beta})")
    head = (f"{'seed':>4} {'tool':>4} {'stage':<5} {'Acc@0.5':>8} {'mIoU':>6} {'1 shape':>8} {'2 shapes':>9} {'3 shapes':>9} "
            f"{'random':>7} {'named2/n':>8} {'named3/n':>8} {'e.calls':>7} {'reward0':>8} {'reward1':>8} {'calls':>6}")
    print(head + "\n" + "-" * len(head))
    for (seed, tool), rep in reports.items():
        for st in STAGES:
            e = rep.get(st, {})
            ev = e.get("eval", {})
            by = ev.get("by_shapes", {})
            print(f"{seed:>4} {'on' if tool else 'off':>4} {st:<5} {_f(ev.get('acc'), 8)} {_f(ev.get('mean_iou'), 6)} "
                  + " ".join(_f(by.get(k, {}).get("acc"), w) for k, w in (("1", 8), ("2", 9), ("3", 9)))
                  + f" {_f(ev.get('random_shape_baseline'), 7)} " + " ".join(_share(*named(rep, st, k)) for k in ("2", "3"))
                  + f" {_f(ev.get('tool_calls'), 7, 2)} {_f(e.get('reward_start'), 8)} {_f(e.get('reward_end'), 8)}"
                  f" {_f(e.get('tool_calls_per_rollout'), 6, 2)}")

    def acc(r, st):
        return r.get(st, {}).get("eval", {}).get("acc", float("nan"))

    for tool in tools:
        runs = {s: r for (s, t), r in reports.items() if t == tool}
        label = f"tool {'on' if tool else 'off'}"
        a_ok = all(
            acc(r, "sft") > r["sft"]["eval"]["random_shape_baseline"]
            and all((named(r, "sft", k)[0] or 0) >= 0.8 for k in ("2", "3")) for r in runs.values()
        )
        gains = [acc(r, "grpo") - acc(r, "sft") for r in runs.values()]
        mean = statistics.mean(gains)
        se = statistics.stdev(gains) / math.sqrt(len(gains)) if len(gains) > 1 else float("nan")
        b_ok = all(g > 0 for g in gains) and len(gains) > 1 and mean > 2 * se
        print(f"\n[{label}] (a) after SFT named share >= 0.8 on 2 and 3 shapes and Acc@0.5 > random, every seed: "
              f"{'PASS' if a_ok else 'FAIL'}")
        print(f"[{label}] (b) GRPO gain in Acc@0.5 per seed: {', '.join(f'{g:+.3f}' for g in gains)}; "
              f"mean {mean:+.3f}, standard error {se:.3f}: {'PASS' if b_ok else 'FAIL'}")
    if len(tools) == 2:
        on = statistics.mean(acc(r, "grpo") for (s, t), r in reports.items() if t)
        off = statistics.mean(acc(r, "grpo") for (s, t), r in reports.items() if not t)
        print(f"\ntool on vs off, mean Acc@0.5 after SFT+GRPO: on {on:.3f}, off {off:.3f} -> "
              f"{'tool on wins' if on > off else 'tool off wins' if off > on else 'tie'}")
    print("wall time per run: " + ", ".join(f"seed {s} tool {'on' if t else 'off'}: {r['_seconds']:.0f}s"
                                             for (s, t), r in reports.items()))
    out = Path(args.storage)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.json").write_text(json.dumps({f"{s}-{'tool' if t else 'notool'}": r for (s, t), r in reports.items()},
                                                  indent=2, default=str))
    plot(reports, out / "learning.png")
    print(f"full reports: {out / 'learning.json'}; plot: {out / 'learning.png'}")


if __name__ == "__main__":
    main()
