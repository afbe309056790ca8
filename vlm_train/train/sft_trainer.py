"""TRL's SFTTrainer with our batching: packed or length-grouped micro-batches and the
configured loss weighting (vlm_train.train.loss_weights), identical for padded and packed rows.

What changes against TRL's own:

- ``compute_loss``: the same fused LM head forward TRL uses (no full logits), but the
  per-token losses are weighted by the collator's ``loss_weights`` and normalised by the
  weight sum of the whole optimizer step (all micro-batches, all ranks). With ``token``
  weighting this is exactly TRL's loss. TRL's logged metrics (entropy, token accuracy,
  tokens) are kept; ``num_tokens`` counts real tokens, never padding.
- ``_get_num_items_in_batch``: the step's normaliser is the sum of the weights.
- ``get_train_dataloader``: with ``sft.packing``, batches come from the packing plan.
- ``_track_num_input_tokens``: counts the collator's ``real_tokens`` (packed batches carry
  no attention mask, and a pad id can be a real token), so ``num_input_tokens_seen`` and
  tokens/s count real tokens only.
- with a ``value_loss`` (``loss.coordinate_sigma``, vlm_train.train.value_loss): one forward
  with the full logits, coordinate-value tokens trained against a Gaussian over neighbouring
  values, every other token as before (token weighting only).
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer

from vlm_train.data.packing import PackedBatchSampler, RowKeyed
from vlm_train.models.base import IGNORE
from vlm_train.train.param_groups import GroupLearningRates
from vlm_train.train.sft_options import SFTOptions
from vlm_train.train.value_loss import ValueSmoothedLoss

# Collator outputs that steer the loss but are not model inputs.
PRIVATE_KEYS = ("loss_weights", "real_tokens")


def real_tokens(inputs: dict[str, Any]) -> torch.Tensor:
    if "real_tokens" in inputs:
        return inputs["real_tokens"].sum()
    return inputs["attention_mask"].sum()


class VLMSFTTrainer(GroupLearningRates, SFTTrainer):
    def __init__(self, *args: Any, options: SFTOptions, lengths: list[int] | None = None,
                 value_loss: ValueSmoothedLoss | None = None, **kwargs: Any):
        self.options = options
        self.value_loss = value_loss
        self.lengths = lengths
        super().__init__(*args, **kwargs)

    # ---- data -----------------------------------------------------------------------------
    def get_train_dataloader(self):
        if not self.options.packing:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        args = self.args
        sampler = PackedBatchSampler(
            self.lengths, args.max_length, args.per_device_train_batch_size, self.options.packing_buffer, seed=args.seed
        )
        workers = args.dataloader_num_workers
        loader = DataLoader(
            RowKeyed(self.train_dataset),
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers if workers else False,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
        )
        return self.accelerator.prepare(loader)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        if not batch_samples or "loss_weights" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        total = sum(b["loss_weights"].sum() for b in batch_samples).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return total

    def _track_num_input_tokens(self, inputs):
        if self.args.include_num_input_tokens_seen == "no" or "real_tokens" not in inputs:
            return super()._track_num_input_tokens(inputs)
        n = torch.as_tensor(real_tokens(inputs), device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += self.accelerator.gather(n).sum().item()

    # ---- loss -----------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.value_loss is not None:
            return self._value_loss(model, inputs, return_outputs, num_items_in_batch)
        if "loss_weights" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        weights = inputs["loss_weights"]
        n_real = real_tokens(inputs)
        model_inputs = {k: v for k, v in inputs.items() if k not in PRIVATE_KEYS}
        outputs = model(**{**model_inputs, "use_cache": False}, fused_lm_head=True)
        per_token = -outputs.log_probs  # [B, L-1], zero where the shifted label is ignored
        if self.args.loss_type == "dft":  # https://huggingface.co/papers/2508.05629
            per_token = per_token * outputs.log_probs.exp().detach()
        w = weights[:, 1:].to(per_token.dtype)
        norm = w.sum() if num_items_in_batch is None else num_items_in_batch
        loss = (per_token * w).sum() / torch.as_tensor(norm, device=per_token.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask.sum()).sum()
        self._metrics[mode]["entropy"].append(
            (gather(outputs.entropy.detach().sum()).sum() / num_valid).item() if num_valid > 0 else 0.0
        )
        self._metrics[mode]["mean_token_accuracy"].append(
            (gather(outputs.is_top1.sum()).sum() / num_valid).item() if num_valid > 0 else 0.0
        )
        if mode == "train":
            self._total_train_tokens += gather(n_real).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_inputs.items() if k != "labels"})
        return (loss, outputs) if return_outputs else loss

    def _value_loss(self, model, inputs, return_outputs, num_items_in_batch):
        """One full-logits forward; the loss of ``self.value_loss``; TRL's token accuracy."""
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in (*PRIVATE_KEYS, "labels")}
        outputs = model(**model_inputs, use_cache=False)
        loss = self.value_loss(outputs.logits, labels, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        with torch.no_grad():
            shifted = labels[:, 1:]
            keep = shifted != IGNORE
            correct = (outputs.logits[:, :-1].argmax(-1) == shifted) & keep
            n = self.accelerator.gather_for_metrics(keep.sum()).sum()
            c = self.accelerator.gather_for_metrics(correct.sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append((c / n).item() if n > 0 else 0.0)
        return (loss, outputs) if return_outputs else loss
