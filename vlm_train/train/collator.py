"""The SFT collator: per-sample inputs from the family's builder, then padded or packed rows.

Each sample is encoded alone by the family's InputBuilder (truncated by its rule, which never
cuts an image) and optionally cached (``data.cache``). A batch is then either

- ``padded``: right-padded rows with an attention mask, the same tensors the builder itself
  returns for the batch (TRL's default VLM path), or
- ``packed``: samples concatenated into rows of at most ``max_length`` tokens, no attention
  mask, ``position_ids`` restarting at 0 for every sample (and for a row's padding tail,
  which forms a segment of its own). transformers turns packed ``position_ids`` into a
  block-diagonal causal mask on sdpa/eager; on flash attention the collator also emits
  ``cu_seq_lens_q/k`` and ``max_length_q/k`` for the varlen kernel, so no token attends
  across samples on any backend. Rows come from the batch sampler's plan (a ``row`` key on
  each item) or, without one, from best-fit decreasing over the micro-batch.

Either way every sample's vision inputs are merged by the family (``Family.merge_visuals``)
in the order their placeholders appear, so the whole micro-batch goes through the vision
tower once. ``loss_weights`` (vlm_train.train.loss_weights) and ``real_tokens`` (per row)
ride along for the trainer, which takes them out before the forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from vlm_train.data.cache import EncodingCache, cache_key
from vlm_train.data.packing import best_fit_decreasing
from vlm_train.data.sample import Sample
from vlm_train.train.loss_weights import IGNORE, sample_weights

TEXT_KEYS = ("input_ids", "attention_mask", "labels")


def sample_json(item: Any) -> str:
    """The sample's JSON from a dataset row ``{"sample": json}``, a Sample, or its JSON."""
    if isinstance(item, Sample):
        return item.to_json()
    if isinstance(item, dict):
        return sample_json(item["sample"]) if "sample" in item else Sample.from_dict(item).to_json()
    return item


class SFTCollator:
    """Callable collator (``data_collator`` of the trainer); safe to pickle into workers.

    Args:
        builder: the family's InputBuilder (``family.make_inputs(...)``), with ``pad_id``.
        merge_visuals: ``Family.merge_visuals``: per-sample vision tensors -> batch tensors.
        max_length: row capacity for packing (samples are truncated by the builder).
        packed: pack rows (True) or right-pad one sample per row (False).
        weighting: ``token``, ``sample`` or ``square`` (see loss_weights).
        cache: per-sample encoding cache; None = no cache.
        varlen_kwargs: emit flash-attention varlen kwargs with packed batches.
        settings: builder settings that enter the cache key.
    """

    def __init__(
        self,
        builder: Any,
        merge_visuals: Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]],
        *,
        max_length: int,
        packed: bool = False,
        weighting: str = "token",
        cache: EncodingCache | None = None,
        varlen_kwargs: bool = False,
        settings: dict[str, Any] | None = None,
    ):
        self.builder = builder
        self.merge_visuals = merge_visuals
        self.max_length = max_length
        self.packed = packed
        self.weighting = weighting
        self.cache = cache or EncodingCache("none")
        self.varlen_kwargs = varlen_kwargs
        self.settings = {"max_length": max_length, **(settings or {})}
        self.pad_id = builder.pad_id
        self.encodes = 0  # samples actually built (not served by the cache); tests and benchmarks read it

    # ---- one sample ---------------------------------------------------------------------
    def encode(self, item: Any) -> dict[str, torch.Tensor]:
        """1-D ``input_ids`` and ``labels`` of one sample plus its vision tensors."""
        js = sample_json(item)
        key = cache_key(js, self.settings)
        enc = self.cache.get(key)
        if enc is not None:
            return enc
        batch = self.builder([Sample.from_json(js)])
        n = int(batch["attention_mask"][0].sum())
        enc = {"input_ids": batch["input_ids"][0, :n].clone(), "labels": batch["labels"][0, :n].clone()}
        enc.update({k: v for k, v in batch.items() if k not in TEXT_KEYS and torch.is_tensor(v)})
        self.encodes += 1
        self.cache.put(key, enc)
        return enc

    def length(self, item: Any) -> int:
        return int(self.encode(item)["input_ids"].numel())

    # ---- batches ------------------------------------------------------------------------
    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        encs = [self.encode(it) for it in items]
        if not self.packed:
            return self.pad(encs)
        return self.pack(encs, self.rows(items, encs))

    def rows(self, items: Sequence[Any], encs: list[dict[str, torch.Tensor]]) -> list[list[int]]:
        """Item positions per row: the sampler's plan when items carry ``row``, else BFD."""
        planned = [it.get("row") if isinstance(it, dict) else None for it in items]
        if all(r is not None for r in planned):
            out: dict[int, list[int]] = {}
            for i, r in enumerate(planned):
                out.setdefault(r, []).append(i)
            return [out[r] for r in sorted(out)]
        return best_fit_decreasing([int(e["input_ids"].numel()) for e in encs], self.max_length)

    def _visuals(self, encs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        parts = [{k: v for k, v in e.items() if k not in TEXT_KEYS} for e in encs]
        parts = [p for p in parts if p]
        return self.merge_visuals(parts) if parts else {}

    def pad(self, encs: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        width = max(e["input_ids"].numel() for e in encs)
        ids = torch.full((len(encs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        labels = torch.full((len(encs), width), IGNORE, dtype=torch.long)
        weights = torch.zeros((len(encs), width), dtype=torch.float32)
        for r, e in enumerate(encs):
            n = e["input_ids"].numel()
            ids[r, :n], labels[r, :n], mask[r, :n] = e["input_ids"], e["labels"], 1
            weights[r, :n] = sample_weights(e["labels"], self.weighting)
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "loss_weights": weights,
                 "real_tokens": mask.sum(1)}
        batch.update(self._visuals(encs))
        return batch

    def pack(self, encs: list[dict[str, torch.Tensor]], rows: list[list[int]]) -> dict[str, Any]:
        lens = [[encs[i]["input_ids"].numel() for i in row] for row in rows]
        width = max(sum(r) for r in lens)
        shape = (len(rows), width)
        ids = torch.full(shape, self.pad_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE, dtype=torch.long)
        pos = torch.zeros(shape, dtype=torch.long)
        weights = torch.zeros(shape, dtype=torch.float32)
        segments: list[int] = []  # lengths of every segment, row-major (samples and pad tails)
        for r, row in enumerate(rows):
            at = 0
            for i, n in zip(row, lens[r], strict=True):
                e = encs[i]
                ids[r, at : at + n] = e["input_ids"]
                lab = e["labels"].clone()
                lab[0] = IGNORE  # would be predicted from the previous sample's last token
                labels[r, at : at + n] = lab
                pos[r, at : at + n] = torch.arange(n)
                weights[r, at : at + n] = sample_weights(e["labels"], self.weighting)
                segments.append(n)
                at += n
            if at < width:
                pos[r, at:] = torch.arange(width - at)
                segments.append(width - at)
        # use_cache False: with a KV cache transformers ignores packed position_ids and builds a
        # plain causal mask (masking_utils._preprocess_mask_arguments), attending across samples.
        batch: dict[str, Any] = {"input_ids": ids, "labels": labels, "position_ids": pos, "loss_weights": weights,
                                 "real_tokens": torch.tensor([sum(r) for r in lens]), "use_cache": False}
        if self.varlen_kwargs:
            cu = torch.zeros(len(segments) + 1, dtype=torch.int32)
            cu[1:] = torch.tensor(segments, dtype=torch.int32).cumsum(0)
            batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(segments), max_length_k=max(segments))
        batch.update(self._visuals([encs[i] for row in rows for i in row]))
        return batch
