"""TRL's SFTTrainer with an optional value-smoothed loss (``loss.coordinate_sigma``).

TRL's ``compute_loss_func`` would do, but TRL then runs a second (no-grad) forward per step for
its metrics; on the CPU default that is a third more compute per step. This subclass runs one
forward, computes the loss from its logits and logs the same ``mean_token_accuracy`` TRL does.
Without a value loss it is TRL's SFTTrainer unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer

from vlm_train.train.value_loss import ValueSmoothedLoss


class VLMSFTTrainer(SFTTrainer):
    def __init__(self, *args: Any, value_loss: ValueSmoothedLoss | None = None, **kwargs: Any):
        self.value_loss = value_loss
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.value_loss is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        loss = self.value_loss(outputs.logits, labels, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients
        with torch.no_grad():
            shifted = labels[:, 1:]
            keep = shifted != -100
            correct = (outputs.logits[:, :-1].argmax(-1) == shifted) & keep
            n = self.accelerator.gather_for_metrics(keep.sum()).sum()
            c = self.accelerator.gather_for_metrics(correct.sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append((c / n).item() if n > 0 else 0.0)
        return (loss, outputs) if return_outputs else loss
