"""GRPO on TRL's GRPOTrainer with live crop-tool rollouts, for every family.

Why a subclass and ``rollout_func`` rather than TRL's ``tools=`` / ``environment_factory``:
TRL's tool loop re-renders prompts with ``processing_class.apply_chat_template`` and
re-processes images with the processor's image processor, in shapes that fit only some families'
processors. Neither a tiled family's tiles nor visual atoms with negative placeholder ids
(docs/models.md, the family sections) survive that.
So the rollout is ours (``vlm_train.train.rollout``: exact ids, crop made from the original
image, tool-turn tokens masked via TRL's ``env_mask``), and so is the forward that scores
the rollouts: ``_get_per_token_logps_and_entropies`` looks each row up by its index in the
generation batch and feeds the model that row's own pixel tensors. The index travels with the
row through TRL's shuffle and split of the batch (a ``row_index`` tensor in the batch dict), so
two rollouts with identical token ids but different images (same phrase, same completion) are
still scored with their own pixels. Everything else (advantages, loss types, KL,
reference model, logging, DeepSpeed) is TRL's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from vlm_train.config import JobConfig
from vlm_train.data.coords import CoordConvention
from vlm_train.data.sample import Sample
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.models.chat import ChatFormat
from vlm_train.models.common import has_cuda
from vlm_train.rewards.functions import build_reward_funcs
from vlm_train.train.args import build_training_args
from vlm_train.train.callbacks import ThroughputCallback, stage_callbacks
from vlm_train.train.dataset import dataset_of, read_samples
from vlm_train.train.grpo_profile import StepProfile
from vlm_train.train.heldout import add_heldout_eval
from vlm_train.train.loop import train_and_finish
from vlm_train.train.model import load_model, lora_config
from vlm_train.train.nonfinite import NonFiniteGuard
from vlm_train.train.param_groups import GroupLearningRates
from vlm_train.train.rollout import CropToolRollout, Row, merge_mm
from vlm_train.train.worker import init_worker_env

log = logging.getLogger("vlm_train")


class VLMGRPOTrainer(GroupLearningRates, StepProfile, GRPOTrainer):
    """GRPOTrainer whose generation is a crop-tool rollout and whose forward uses per-row pixels;
    its step time is split into rollout / score / update scalars (vlm_train.train.grpo_profile)."""

    def __init__(self, *args, rollout: CropToolRollout, **kwargs):
        self.rollout = rollout
        self._perf_reset()
        # Per rollout of the current generation batch, in rollout order: the ids TRL sees (negative
        # placeholders as pad), the true ids, and the row's multimodal tensors.
        self._rows: list[tuple[list[int], list[int], dict[str, torch.Tensor]]] = []
        # Row indices of the batch being scored; None while TRL scores the fresh batch (rollout order).
        self._scoring: list[int] | None = None
        self._batch_inputs: list[dict[str, Any]] = []
        super().__init__(*args, rollout_func=self._rollout_func, **kwargs)

    # TRL passes only prompts to rollout_func; keep the rows of the batch to reach the samples.
    def _generate_and_score_completions(self, inputs):
        self._batch_inputs = inputs
        self._rows = []
        self._scoring = None
        out = super()._generate_and_score_completions(inputs)
        # Shuffled and split with the other per-row tensors, read back in _compute_loss.
        out["row_index"] = torch.arange(len(self._rows), device=self.accelerator.device)
        return out

    def _compute_loss(self, model, inputs):
        self._scoring = inputs["row_index"].tolist()
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._scoring = None

    def _rollout_func(self, prompts: list, trainer: Any) -> dict[str, Any]:
        from trl.models import unwrap_model_for_generation

        samples = [Sample.from_json(x["sample"]) for x in self._batch_inputs]
        t0 = time.perf_counter()  # the rollout: prompt inputs, generation, live crop calls
        rows = [self.rollout.start(s) for s in samples]
        gen = {"do_sample": True, "temperature": self.temperature}
        if self.args.top_p is not None:
            gen["top_p"] = self.args.top_p
        if self.args.top_k:
            gen["top_k"] = self.args.top_k
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation
        ) as model:
            was_training = model.training
            model.eval()
            n_generate = self.rollout.generate(model, rows, gen, self.max_completion_length)
            model.train(was_training)
        self.record_rollout(time.perf_counter() - t0, sum(sum(r.mask) for r in rows), sum(r.calls for r in rows), n_generate)
        pad = self.rollout.pad
        out_prompt, out_completion, masks, messages = [], [], [], []
        for r in rows:
            # TRL decodes and pads these: negative placeholder ids (a family's visual atoms) travel as pad
            # ids, and the true ids are restored from the row table in the forward below.
            safe_p = [t if t >= 0 else pad for t in r.prompt_ids]
            safe_c = [t if t >= 0 else pad for t in r.completion_ids]
            self._rows.append((safe_p + safe_c, r.ids, merge_mm(r.mm)))
            out_prompt.append(safe_p)
            out_completion.append(safe_c or [pad])
            masks.append(r.mask or [0])
            messages.append(_as_messages(r, self.rollout.family.chat))
        calls = torch.tensor([float(r.calls) for r in rows], device=self.accelerator.device)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["tools/calls_per_rollout"].append(self.accelerator.gather(calls).mean().item())
        return {
            "prompt_ids": out_prompt,
            "completion_ids": out_completion,
            "logprobs": None,
            "env_mask": masks,
            "completion_messages": messages,
        }

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False, **_):
        batch_size = batch_size or input_ids.size(0)
        order = self._scoring if self._scoring is not None else range(input_ids.size(0))
        if len(order) != input_ids.size(0):
            raise RuntimeError(f"{input_ids.size(0)} rows to score but {len(order)} row indices")
        all_logps, all_ent = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids = input_ids[start:start + batch_size].clone()
            mask = attention_mask[start:start + batch_size]
            mms = []
            for i in range(ids.size(0)):
                seen, true_ids, mm = self._rows[order[start + i]]
                if ids[i][mask[i].bool()].tolist() != seen:  # the index and the batch disagree: a bug, never data
                    raise RuntimeError(f"row {start + i} of the scored batch is not rollout {order[start + i]}")
                ids[i, mask[i].bool()] = torch.tensor(true_ids, device=ids.device)
                mms.append(mm)
            mm = {k: v.to(ids.device) for k, v in merge_mm(mms).items()}
            if "pixel_values" in mm:
                mm["pixel_values"] = mm["pixel_values"].to(next(model.parameters()).dtype)
            out = model(input_ids=ids, attention_mask=mask, **mm)
            logits = out.logits[:, -logits_to_keep - 1:-1, :].float() / self.temperature
            targets = input_ids[start:start + batch_size, -logits_to_keep:]
            logp = torch.log_softmax(logits, dim=-1)
            all_logps.append(logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1))
            if compute_entropy:
                all_ent.append(-(logp.exp() * logp).sum(-1))
        logps = torch.cat(all_logps)
        return logps, (torch.cat(all_ent) if compute_entropy else None), None


def _as_messages(r: Row, chat: ChatFormat) -> list[dict[str, Any]]:
    """The rollout as conversation turns for the reward functions (tool turns marked as such)."""
    msgs: list[dict[str, Any]] = []
    for i, seg in enumerate(r.text):
        msgs.append({"role": "assistant", "content": seg.replace(chat.turn_end, "")})
        if i < r.calls:
            msgs.append({"role": "tool", "content": "<crop>"})
    return msgs


def wrap_reward(fn):
    """TRL hands decoded completion ids (tool turns included); score our rollout turns instead."""

    def reward(completions, completion_messages=None, **kw):
        return fn(completion_messages if completion_messages is not None else completions, **kw)

    reward.__name__ = fn.__name__
    return reward


def grpo_rows(samples: list[Sample], coords: CoordConvention) -> list[dict[str, Any]]:
    """One dataset row per sample; ``coords`` (the family's convention) is stored by name."""
    rows = []
    for s in samples:
        target = s.targets[0] if s.targets else None
        prompt_text = " ".join(m.text() for m in s.messages if m.role == "user")
        rows.append({
            "prompt": [{"role": "user", "content": prompt_text}],
            "sample": s.to_json(),
            "image_size": list(s.image_sizes[0]) if s.image_sizes else None,
            "target_box": target.box.as_list() if target else None,
            "regions": [{"label": r.phrase, "box": r.box.as_list()} for r in s.regions],
            "answer": s.meta.get("answer"),
            "coords": coords.name,
        })
    return rows


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point for GRPO (same contract as the SFT loop)."""
    marks = {"worker_entered": time.time()}
    cfg = JobConfig.from_dict(config["job"])
    info = init_worker_env(cfg, "grpo")
    marks["env_ready"] = time.time()
    family = get_family(cfg.model.family)
    funcs, _ = build_reward_funcs(cfg.rewards.weights, cfg.rewards.iou_threshold)
    args = build_training_args(cfg, "grpo", info.rank, has_cuda())  # before the model: ZeRO-3 partitions at load
    model, processor = load_model(cfg, family)
    marks["model_loaded"] = time.time()
    data = config["data"]
    builder = family.make_inputs(processor, InputsConfig.from_job(cfg, data["image_roots"]))
    # tools.crop off: the rollout executes no call (call_limit 0).
    tools = dataclasses.replace(cfg.tools, max_calls=cfg.tools.call_limit)
    rollout = CropToolRollout(family, processor, builder, tools, data["image_roots"],
                              max_pixels=cfg.data.max_image_pixels)
    train = read_samples(Path(data["train"]))
    callbacks, stopper = stage_callbacks(cfg, "grpo")
    trainer = VLMGRPOTrainer(
        model=model,
        reward_funcs=[wrap_reward(f) for f in funcs],
        args=args,
        train_dataset=dataset_of(grpo_rows(train, family.coords)),
        processing_class=processor,
        peft_config=lora_config(cfg, family),
        callbacks=callbacks,
        rollout=rollout,
    )
    trainer.lr_groups, trainer.lr_scales = family.module_groups, cfg.model.lr_scale
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback())
    add_heldout_eval(trainer, cfg, args, info, family, processor, data)
    guard = NonFiniteGuard(cfg.run.on_nonfinite)
    guard.install(trainer)
    train_and_finish(trainer, cfg, info, "grpo", stopper, family, processor, guard=guard, marks=marks)
