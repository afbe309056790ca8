"""The NaN/Inf guard: a non-finite loss or gradient norm never becomes a checkpoint.

A batch with no learned token left after truncation (its loss would be 0/0) is dropped the
same way as a skipped one, in either mode, and counted in ``dropped``.

``run.on_nonfinite: stop`` (the default) raises ``NonFiniteError`` naming the step and the
batch's sample ids before the optimizer step, so the last reported checkpoint is the last
good state. ``skip`` lets the batch contribute no gradient (the loss is replaced by a zero
that still reaches every trainable parameter, so every rank's collectives run as usual),
counts the skip and logs the sample ids. Ranks agree through one all-reduce of a flag per
micro-batch: all skip or all stop together, none waits in a collective for a dead peer.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import torch
from transformers import TrainerCallback

from vlm_train.models.base import IGNORE

log = logging.getLogger("vlm_train")

SAMPLE_IDS = "sample_ids"  # batch key the collator wrapper adds and the loss wrapper removes


class NonFiniteError(RuntimeError):
    """A non-finite loss or gradient norm under ``run.on_nonfinite: stop``."""


class _IdsCollator:
    """The family collator, plus the sample ids of the batch under ``SAMPLE_IDS``."""

    def __init__(self, collator: Any):
        self._collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self._collator(features)
        ids = []
        for f in features:
            try:
                ids.append(str(json.loads(f["sample"])["id"]))
            except (KeyError, TypeError, ValueError):
                ids.append("?")
        batch[SAMPLE_IDS] = ids
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collator, name)


def _any_rank(flag: bool, device: torch.device) -> bool:
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


class NonFiniteGuard:
    """Installs the checks on a transformers/TRL trainer. ``skipped``: batches skipped so far."""

    def __init__(self, mode: str = "stop"):
        if mode not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {mode!r}")
        self.mode = mode
        self.skipped = 0
        self.dropped = 0  # batches whose learned tokens were all truncated away
        self.last_ids: list[str] = []

    def wrap_collator(self, collator: Any) -> Any:
        return _IdsCollator(collator)

    def _where(self, trainer: Any) -> str:
        ids = ", ".join(self.last_ids[:16]) if self.last_ids else "unknown"
        return f"at step {trainer.state.global_step + 1} (batch samples: {ids})"

    def install(self, trainer: Any) -> Any:
        compute_loss = trainer.compute_loss
        get_grad_norm = trainer._get_grad_norm

        def guarded_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
            ids = inputs.pop(SAMPLE_IDS, None) if isinstance(inputs, dict) else None
            if ids is not None:
                self.last_ids = list(ids)
            labels = inputs.get("labels") if isinstance(inputs, dict) else None
            # Every learned token truncated away (max_length): the loss is 0/0. The forward still
            # runs (ZeRO-3 gathers parameters in it, on every rank together); the batch is dropped.
            empty = isinstance(labels, torch.Tensor) and not bool((labels != IGNORE).any())
            out = compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if not model.training:
                return out
            loss = out[0] if return_outputs else out
            bad = not empty and not bool(torch.isfinite(loss.detach()).all())
            if not _any_rank(bad, loss.device):
                if not empty:
                    return out
                self.dropped += 1
                log.warning("dropping batch %s: no learned token left after truncation; %d dropped so far",
                            self._where(trainer), self.dropped)
                zero = sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)
                return (zero, out[1]) if return_outputs else zero
            value = loss.detach().float().sum().item()
            if self.mode == "stop":
                raise NonFiniteError(f"non-finite loss ({value}) {self._where(trainer)}; the last checkpoint is the "
                                     "last good state (run.on_nonfinite: skip skips such batches instead)")
            self.skipped += 1
            log.warning("skipping batch with non-finite loss (%s) %s; %d skipped so far", value, self._where(trainer), self.skipped)
            zero = sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)
            return (zero, out[1]) if return_outputs else zero

        def guarded_grad_norm(model, grad_norm=None):
            norm = get_grad_norm(model, grad_norm=grad_norm)
            value = float(norm) if norm is not None else 0.0
            bad = not math.isfinite(value)
            if getattr(trainer, "is_deepspeed_enabled", False):
                return norm  # DeepSpeed computes the norm inside its step: checked in on_step_end
            if not bad:
                return norm
            if self.mode == "stop":
                raise NonFiniteError(f"non-finite gradient norm ({value}) {self._where(trainer)}")
            self.skipped += 1
            log.warning("skipping update with non-finite gradient norm %s; %d skipped so far", self._where(trainer), self.skipped)
            model.zero_grad(set_to_none=False)
            return 0.0

        trainer.compute_loss = guarded_loss
        trainer._get_grad_norm = guarded_grad_norm
        trainer.add_callback(_DeepSpeedNormCheck(self, trainer))
        return trainer


class _DeepSpeedNormCheck(TrainerCallback):
    """Under DeepSpeed the step's gradient norm is known only after its step: check it
    before the step's checkpoint is saved (on_step_end runs before the save)."""

    def __init__(self, guard: NonFiniteGuard, trainer: Any):
        self.guard, self.trainer = guard, trainer

    def on_step_end(self, args, state, control, **kwargs):
        engine = getattr(self.trainer, "model_wrapped", None)
        if not getattr(self.trainer, "is_deepspeed_enabled", False) or not hasattr(engine, "get_global_grad_norm"):
            return None
        norm = engine.get_global_grad_norm()
        if norm is None or math.isfinite(float(norm)):
            return None
        applied = engine.was_step_applied() if hasattr(engine, "was_step_applied") else True
        if self.guard.mode == "skip" and not applied:  # DeepSpeed itself skipped the overflowing step
            self.guard.skipped += 1
            return None
        raise NonFiniteError(f"non-finite gradient norm ({norm}) at step {state.global_step} "
                             f"(batch samples: {', '.join(self.guard.last_ids[:16]) or 'unknown'})")
