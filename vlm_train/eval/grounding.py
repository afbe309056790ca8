"""Grounding evaluation: Acc@0.5 and mean IoU on held-out samples (the RefCOCO protocol of
docs/models.md).

Greedy decoding (one beam, ``max_new_tokens`` 100 by default), the sample's own prompt, the
family's box parser on the answer; a completion with no box scores IoU 0 (the protocol's
(0, 0, 0, 0) fallback). Reported next to the random-shape baseline (a perfect localiser that
boxes a random shape of the image), the named-shape share (of the predictions that hit some
shape of the image, the share that hit the named one: 1/k for a random pick among k shapes) and
split by the number of shapes, so a model that boxes shapes but ignores the phrase cannot pass
for one that grounds.

With ``tools`` given, the policy may call the crop tool as in GRPO (the same live rollout,
greedy): the crop is made and shown, and the box of the answer after the last tool turn is
scored; ``tool_calls`` is the mean number of calls per sample. Without, generation stops at the
end of the first turn, as in the RefCOCO protocol.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vlm_train.data.media import load_image
from vlm_train.data.sample import Box, Sample
from vlm_train.eval.metrics import iou, named_shape_share, random_shape_baseline, score_by_group, score_ious
from vlm_train.models.base import InputsConfig
from vlm_train.rewards.functions import REWARDS
from vlm_train.train.rollout import prompt_sample


@dataclass
class EvalResult:
    acc: float
    mean_iou: float
    n: int
    random_shape_baseline: float
    named_shape_share: float
    shape_hits: int
    by_shapes: dict[str, dict[str, float]]
    box_valid: float
    format: float
    seconds: float
    tool_calls: float = 0.0
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        d = dict(vars(self))
        if not with_predictions:
            d.pop("predictions")
        return d


@torch.no_grad()
def generate_texts(model: Any, processor: Any, family: Any, builder: Any, samples: list[Sample],
                   batch_size: int = 8, max_new_tokens: int = 100) -> list[str]:
    tok = processor.tokenizer
    out: list[str] = []
    device = next(model.parameters()).device
    for i in range(0, len(samples), batch_size):
        batch = builder([prompt_sample(s) for s in samples[i : i + batch_size]], for_generation=True)
        width = batch["input_ids"].shape[1]
        kw = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        if "pixel_values" in kw:
            kw["pixel_values"] = kw["pixel_values"].to(next(model.parameters()).dtype)
        gen = model.generate(
            **kw, max_new_tokens=max_new_tokens, min_new_tokens=1, do_sample=False, num_beams=1,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.convert_tokens_to_ids(family.chat.turn_end),
            suppress_tokens=[t for t in family.suppress_token_ids(processor) if t is not None and t >= 0] or None,
        )
        out += tok.batch_decode(gen[:, width:].clamp(min=0), skip_special_tokens=False)
    return [family.chat.strip_completion(t) for t in out]


@torch.no_grad()
def generate_with_tool(model: Any, processor: Any, family: Any, builder: Any, samples: list[Sample],
                       image_roots: list[str], tools: Any, batch_size: int = 8,
                       max_new_tokens: int = 100) -> tuple[list[list[str]], list[int]]:
    """Greedy rollouts with the crop tool live: per sample its generated turns and its call count."""
    from vlm_train.train.rollout import CropToolRollout

    rollout = CropToolRollout(family, processor, builder, tools, image_roots)
    turns, calls = [], []
    for i in range(0, len(samples), batch_size):
        rows = [rollout.start(s) for s in samples[i : i + batch_size]]
        rollout.generate(model, rows, {"do_sample": False, "num_beams": 1}, max_new_tokens)
        for r in rows:
            turns.append([family.chat.strip_completion(t) for t in r.text] or [""])
            calls.append(r.calls)
    return turns, calls


def generate_answers(model: Any, processor: Any, family: Any, builder: Any, samples: list[Sample],
                     image_roots: list[str], tools: Any, batch_size: int = 8,
                     max_new_tokens: int = 100) -> tuple[list[list[str]], list[int]]:
    """Per sample its generated turns and crop calls: rollouts with the tool live when ``tools``
    allows calls, single-turn greedy answers otherwise."""
    if tools is not None and getattr(tools, "max_calls", 0) > 0:
        return generate_with_tool(model, processor, family, builder, samples, image_roots, tools, batch_size,
                                  max_new_tokens)
    texts = generate_texts(model, processor, family, builder, samples, batch_size, max_new_tokens)
    return [[t] for t in texts], [0] * len(texts)


def evaluate(model: Any, processor: Any, family: Any, samples: list[Sample], image_roots: list[str],
             batch_size: int = 8, max_new_tokens: int = 100, tools: Any = None) -> EvalResult:
    """Score ``samples`` that carry a grounding target (others are ignored).

    ``tools``: a ``ToolsConfig``-like object (``max_calls``, ``min_crop_size``) to let the policy
    call the crop tool; None evaluates single-turn answers.
    """
    t0 = time.perf_counter()
    samples = gradable(samples)
    builder = family.make_inputs(processor, InputsConfig(image_roots=tuple(image_roots)))
    model.eval()
    turns, calls = generate_answers(model, processor, family, builder, samples, image_roots, tools, batch_size,
                                    max_new_tokens)
    return score_texts(family, samples, ["\n".join(t) for t in turns], time.perf_counter() - t0, turns, calls)


def gradable(samples: list[Sample]) -> list[Sample]:
    """The samples evaluation can score: a grounding target and the image size to read boxes in."""
    return [s for s in samples if s.targets and s.image_sizes]


def score_texts(family: Any, samples: list[Sample], texts: list[str], seconds: float = 0.0,
                turns: list[list[str]] | None = None, calls: list[int] | None = None) -> EvalResult:
    """The protocol's scores of generated ``texts``, one per sample of ``gradable`` samples.

    ``turns``/``calls``: per sample its generated turns and crop calls (tool-live evaluation);
    the answer is then the last turn, and the format checks read all of them.
    """
    turns = turns if turns is not None else [[t] for t in texts]
    calls = calls if calls is not None else [0] * len(texts)
    ious, groups, preds, pred_boxes = [], [], [], []
    for s, text, tt, nc in zip(samples, texts, turns, calls, strict=True):
        w, h = s.image_sizes[0]
        boxes = family.text_to_boxes(tt[-1] if nc else text, w, h)
        pred = boxes[0] if boxes else None
        v = iou(pred, s.targets[0].box) if pred is not None else 0.0
        ious.append(v)
        pred_boxes.append(pred)
        groups.append(str(s.meta.get("n_shapes", len(s.regions) or 1)))
        preds.append({"id": s.id, "text": text, "pred": pred.as_list() if pred else None,
                      "target": s.targets[0].box.as_list(), "iou": v, "image": _first_image(s), "calls": nc})
    score = score_ious(ious)
    shapes = [[r.box for r in s.regions] or [s.targets[0].box] for s in samples]
    targets = [s.targets[0].box for s in samples]
    baseline = random_shape_baseline(shapes, targets)
    by_shapes = {k: {"acc": g.acc, "mean_iou": g.mean_iou, "n": g.n} for k, g in score_by_group(ious, groups).items()}
    for k in by_shapes:
        idx = [i for i, g in enumerate(groups) if g == k]
        by_shapes[k].update(named_shape_share([pred_boxes[i] for i in idx], [targets[i] for i in idx], [shapes[i] for i in idx]).to_dict())
    named = named_shape_share(pred_boxes, targets, shapes)
    cols = {"image_size": [list(s.image_sizes[0]) for s in samples], "coords": [family.coords.name] * len(samples)}
    box_valid = REWARDS["box_valid"](texts, **cols) if samples else []
    fmt = REWARDS["format"](texts, **cols) if samples else []
    return EvalResult(
        acc=score.acc, mean_iou=score.mean_iou, n=score.n, random_shape_baseline=baseline,
        named_shape_share=named.share, shape_hits=named.hits, by_shapes=by_shapes,
        box_valid=sum(box_valid) / max(len(box_valid), 1), format=sum(fmt) / max(len(fmt), 1),
        seconds=seconds, predictions=preds, tool_calls=sum(calls) / max(len(calls), 1),
    )


def _first_image(s: Sample) -> str | None:
    return next((p.media for m in s.messages for p in m.content if p.type == "image"), None)


def draw_boxes(image, target: Box | list[float], pred: Box | list[float] | None):
    """The image with the ground truth in green and the prediction in red (for TensorBoard)."""
    from PIL import ImageDraw

    im = image.convert("RGB").copy()
    d = ImageDraw.Draw(im)
    t = target.as_list() if isinstance(target, Box) else target
    d.rectangle(t, outline=(0, 255, 0), width=1)
    if pred is not None:
        p = pred.as_list() if isinstance(pred, Box) else pred
        x1, y1, x2, y2 = p
        d.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=(255, 0, 0), width=1)
    return im


def log_to_tensorboard(result: EvalResult, logdir: Path, tag: str, step: int, image_roots: list[str], n_images: int = 4) -> None:
    """Scalars and a few images with boxes drawn (green truth, red prediction)."""
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    w.add_scalar(f"{tag}/acc@0.5", result.acc, step)
    w.add_scalar(f"{tag}/mean_iou", result.mean_iou, step)
    w.add_scalar(f"{tag}/random_shape_baseline", result.random_shape_baseline, step)
    w.add_scalar(f"{tag}/named_shape_share", result.named_shape_share, step)
    for p in result.predictions[:n_images]:
        if not p["image"]:
            continue
        im = draw_boxes(load_image(p["image"], image_roots), p["target"], p["pred"])
        # Upscale small synthetic images so the boxes are visible.
        scale = max(1, 256 // max(im.size))
        im = im.resize((im.width * scale, im.height * scale), 0)
        w.add_image(f"{tag}/boxes/{p['id']}", np.asarray(im), step, dataformats="HWC")
    w.close()


def evaluate_checkpoint(model_dir: str, family_name: str, samples_path: str, image_roots: list[str],
                        out_json: str, tb_dir: str | None = None, tag: str = "eval", step: int = 0,
                        max_new_tokens: int = 100, limit: int | None = None,
                        tools: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint, evaluate, write the JSON report (and TensorBoard), return the summary."""
    from vlm_train.config import ModelConfig
    from vlm_train.models import get_family
    from vlm_train.models.common import resolve_dtype

    family = get_family(family_name)
    model, processor = family.load(ModelConfig(family=family_name, path=model_dir), dtype=resolve_dtype("auto"))
    if torch.cuda.is_available():
        model = model.cuda()
    samples = [Sample.from_json(x) for x in Path(samples_path).read_text().splitlines() if x.strip()]
    if limit is not None:
        samples = samples[:limit]
    from vlm_train.config import ToolsConfig

    tools_cfg = ToolsConfig(**tools) if tools else None
    result = evaluate(model, processor, family, samples, image_roots, max_new_tokens=max_new_tokens, tools=tools_cfg)
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps(result.to_dict(with_predictions=True), indent=2))
    if tb_dir:
        log_to_tensorboard(result, Path(tb_dir), tag, step, image_roots)
    return result.to_dict()
