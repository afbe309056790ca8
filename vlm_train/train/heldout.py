"""Held-out grounding accuracy while a stage trains, so learning is visible as it happens.

Every ``eval_steps`` optimizer steps (the ``eval_steps`` field of the stage's ``sft:`` /
``grpo:`` section; unset = off), every rank greedily answers its own share of the first
``per_device_eval_batch_size`` x world-size held-out samples (one batch per rank), the texts
are all-gathered, and rank 0 scores them with the evaluation protocol
(``vlm_train.eval.grounding``) and records Acc@0.5, mean IoU and the named-shape share, overall
and per number of shapes: as TensorBoard scalars ``heldout/...`` at the stage's global step, and
as an entry of the trainer's ``log_history`` (so ``stages/<stage>.json`` and the pipeline's
report carry the curve).

With the crop tool on (``tools.crop`` and ``tools.max_calls`` > 0) the answers are rollouts with
the tool live, as in the stage's own evaluation: a policy that crops first would otherwise be
scored on its crop call's box (which holds the named shape with a margin, so never IoU 0.5),
and the curve would read 0 while the stage's evaluation reads 0.7 (seen on the quick start).

Why every rank: under ZeRO-3 each rank holds a slice of the parameters, so generation is a
collective (TRL's ``unwrap_model_for_generation`` gathers them; transformers runs ``generate``
in lock-step with ``synced_gpus``); equal shards keep every rank in the same number of calls.
Sharding also splits the cost.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from vlm_train.data.sample import Sample
from vlm_train.eval.grounding import EvalResult, generate_answers, gradable, score_texts

log = logging.getLogger("vlm_train")

PREFIX = "heldout"


def scalars(result: EvalResult) -> dict[str, float]:
    """The logged figures of one held-out evaluation, keyed by their TensorBoard tags."""
    out = {f"{PREFIX}/acc@0.5": result.acc, f"{PREFIX}/mean_iou": result.mean_iou,
           f"{PREFIX}/named_shape_share": result.named_shape_share}
    for k, g in result.by_shapes.items():
        out[f"{PREFIX}/acc@0.5/{k}_shapes"] = g["acc"]
        out[f"{PREFIX}/named_shape_share/{k}_shapes"] = g["named_shape_share"]
    return out


class HeldoutEvalCallback(TrainerCallback):
    """Runs the held-out evaluation every ``every`` steps on every rank (see the module doc)."""

    def __init__(self, trainer: Any, family: Any, processor: Any, builder: Any, samples: list[Sample],
                 every: float, per_rank: int, rank: int, world: int, max_new_tokens: int = 100,
                 tools: Any = None, image_roots: list[str] | None = None):
        self.trainer, self.family, self.processor, self.builder = trainer, family, processor, builder
        self.tools, self.image_roots = tools, list(image_roots or [])
        self.every_arg, self.every = every, 0
        self.rank, self.world, self.max_new_tokens = rank, world, max_new_tokens
        subset = gradable(samples)[: per_rank * world]
        self.per_rank = len(subset) // world  # equal shards: every rank makes the same generate calls
        self.subset = subset[: self.per_rank * world]
        self.shard = self.subset[rank * self.per_rank:(rank + 1) * self.per_rank]

    def on_train_begin(self, args, state, control, **kwargs):
        # eval_steps < 1 is a fraction of the run, as in transformers' TrainingArguments.
        e = self.every_arg
        self.every = math.ceil(e * state.max_steps) if 0 < e < 1 else int(e)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every <= 0 or not self.per_rank or state.global_step % self.every:
            return
        t0 = time.perf_counter()
        answers = self._generate()  # per sample: (its turns, its crop calls)
        gathered: list[Any] = [answers]
        if self.world > 1:
            gathered = [None] * self.world
            torch.distributed.all_gather_object(gathered, answers)
        if self.rank != 0:
            return
        turns = [a[0] for part in gathered for a in part]
        calls = [a[1] for part in gathered for a in part]
        result = score_texts(self.family, self.subset, ["\n".join(t) for t in turns], time.perf_counter() - t0,
                             turns, calls)
        figures = scalars(result)
        tb = next((c for c in self.trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
        if tb is not None and tb.tb_writer is not None:
            for tag, v in figures.items():
                tb.tb_writer.add_scalar(tag, v, state.global_step)
            tb.tb_writer.flush()
        state.log_history.append({"step": state.global_step, **figures, f"{PREFIX}/n": result.n,
                                  f"{PREFIX}/seconds": result.seconds})
        log.info("held-out at step %d: Acc@0.5 %.3f, mIoU %.3f, named-shape share %.3f (%d samples, %.1f s)",
                 state.global_step, result.acc, result.mean_iou, result.named_shape_share, result.n, result.seconds)

    def _generate(self) -> list[tuple[list[str], int]]:
        from trl.models import unwrap_model_for_generation

        t = self.trainer
        with unwrap_model_for_generation(t.model_wrapped, t.accelerator, gather_deepspeed3_params=True) as model:
            was_training = model.training
            model.eval()
            try:
                turns, calls = generate_answers(model, self.processor, self.family, self.builder, self.shard,
                                                self.image_roots, self.tools, self.per_rank, self.max_new_tokens)
                return list(zip(turns, calls, strict=True))
            finally:
                model.train(was_training)


def add_heldout_eval(trainer: Any, cfg: Any, args: Any, info: Any, family: Any, processor: Any, data: dict[str, Any]) -> None:
    """Give the stage's trainer its held-out evaluation (none without ``eval_steps`` or held-out samples)."""
    from pathlib import Path

    from vlm_train.models.base import InputsConfig
    from vlm_train.train.dataset import read_samples

    if not args.eval_steps or not data.get("eval"):
        return
    builder = family.make_inputs(processor, InputsConfig.from_job(cfg, data["image_roots"]))
    # As the stage's evaluation: the tool live when the config turns it on.
    tools = dataclasses.replace(cfg.tools, max_calls=cfg.tools.call_limit) if cfg.tools.call_limit > 0 else None
    cb = HeldoutEvalCallback(trainer, family, processor, builder, read_samples(Path(data["eval"])), args.eval_steps,
                             args.per_device_eval_batch_size, info.rank, info.world_size, tools=tools,
                             image_roots=data["image_roots"])
    if not cb.per_rank:
        log.warning("eval_steps set but fewer held-out samples than workers: no held-out evaluation during training")
        return
    trainer.add_callback(cb)
