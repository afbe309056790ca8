"""Canonical samples -> Qwen3-VL model inputs (ids, attention mask, labels, patches, grids).

The text is rendered as the checkpoint's chat template renders the same messages, each image
placeholder expanded to ``<|image_pad|>`` x (grid_t * grid_h * grid_w / merge^2) as the HF
processor does, and the whole string tokenised once, so prompt ids, ``pixel_values`` and
``image_grid_thw`` equal the processor's. Labels come from character spans: only assistant
content and its ``<|im_end|>`` are learned (docs/models.md, "Qwen3-VL"); crops returned by the
tool are inputs, never targets.

M-RoPE position ids are not built here: the model computes them from ``input_ids``,
``image_grid_thw`` and the attention mask (transformers' ``get_rope_index``), which needs the
per-token modality ids the processor returns as ``mm_token_type_ids``. Those are a pure function
of ``input_ids``, so the loaded model derives them (``modeling.derive_token_types``) and every
batch this builder returns holds only tensors that concatenate per image, as rollouts need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from vlm_train.data.media import load_sample_images
from vlm_train.data.sample import Part, Sample, prompt_messages
from vlm_train.models.chat import ChatFormat
from vlm_train.models.common.batching import (
    as_sample,
    expand_placeholders,
    pad_rows,
    span_labels,
    tool_call_args,
    vision_safe_cut,
)
from vlm_train.models.qwen3_vl.grounding import COORDS
from vlm_train.models.qwen3_vl.template import IMAGE_TOKEN, VISION_END, VISION_START

PLACEHOLDER = VISION_START + IMAGE_TOKEN + VISION_END


class Qwen3VLInputs:
    """The family's InputBuilder (see vlm_train.models.base.InputBuilder)."""

    def __init__(self, processor: Any, chat: ChatFormat, image_roots: Sequence[str] = (), max_length: int | None = None,
                 max_image_pixels: int = 64_000_000, min_crop_size: int = 4, enable_thinking: bool = False):
        self.processor, self.chat = processor, chat
        self.tok = processor.tokenizer
        self.image_roots = list(image_roots)
        self.max_length = max_length
        self.max_image_pixels = max_image_pixels
        self.min_crop_size = min_crop_size
        self.enable_thinking = enable_thinking
        self.merge = processor.image_processor.merge_size
        self.pad_id = self.tok.pad_token_id
        self.start_id = self.tok.convert_tokens_to_ids(VISION_START)
        self.end_id = self.tok.convert_tokens_to_ids(VISION_END)

    # ---- rendering ---------------------------------------------------------------------
    def render(self, sample: Sample, images: Sequence[Image.Image] | None, for_generation: bool):
        """(text with one placeholder per image, learned character spans, images in order)."""
        msgs = prompt_messages(sample.messages) if for_generation else sample.messages
        if images is None:  # the one crop-at-render path (data/media.py -> tools/crop.py)
            images = load_sample_images(dataclasses.replace(sample, messages=msgs), self.image_roots,
                                        self.max_image_pixels, min_crop_size=self.min_crop_size)
        it, chat = iter(images), self.chat
        out: list[str] = []
        spans: list[tuple[int, int]] = []
        used: list[Image.Image] = []
        sizes: dict[str, tuple[int, int]] = {}
        last: list[tuple[int, int] | None] = [None]  # a call's box is relative to the latest image

        def emit(s: str, learn: bool = False) -> None:
            start = sum(map(len, out))
            out.append(s)
            if learn and s:
                spans.append((start, start + len(s)))

        def picture(p: Part) -> None:
            im = next(it)
            used.append(im)
            if p.type == "image":
                last[0] = im.size
                if p.media:
                    sizes.setdefault(p.media, im.size)
            emit(PLACEHOLDER)

        for m in msgs:
            if m.role == "tool":
                emit(chat.tool_response_open_text())
                for p in m.content:
                    if p.type == "tool_response" and (p.media or p.source):
                        picture(p)
                    elif p.text:
                        emit(p.text)
                emit(chat.tool_response_close_text())
                continue
            emit(chat.header(m.role))
            learn = m.role == "assistant"
            for p in m.content:
                if p.type == "image":
                    picture(p)
                elif p.type == "video":
                    raise ValueError(f"sample {sample.id}: video parts are expanded to frames by the data layer")
                elif p.type == "text":
                    emit(p.text or "", learn)
                elif p.type == "tool_call":
                    size = sizes.get(p.media or "", last[0])
                    emit(chat.tool_call(p.tool or "crop", tool_call_args(p, size, COORDS)), learn)
            emit(chat.turn_end, learn)
            emit("\n")
        if for_generation:
            emit(chat.assistant_header(self.enable_thinking))
        return "".join(out), spans, used

    # ---- tokenisation ------------------------------------------------------------------
    def encode(self, sample: Sample, images=None, for_generation: bool = False) -> dict[str, Any]:
        text, spans, used = self.render(sample, images, for_generation)
        pixels = grids = None
        if used:
            px = self.processor.image_processor(images=used, return_tensors="pt")
            pixels, grids = px["pixel_values"], px["image_grid_thw"]
        # Expand each placeholder's single <|image_pad|> as the processor does.
        text, spans = expand_placeholders(
            text, IMAGE_TOKEN, lambda k: IMAGE_TOKEN * (int(grids[k].prod()) // self.merge**2), spans
        )
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=not for_generation)
        ids = enc["input_ids"]
        out: dict[str, Any] = {"input_ids": ids, "pixel_values": pixels, "image_grid_thw": grids}
        if for_generation:
            return out
        out["labels"] = span_labels(ids, enc["offset_mapping"], spans)
        if self.max_length is not None and len(ids) > self.max_length:
            out = self._truncate(out)
        return out

    def _truncate(self, enc: dict[str, Any]) -> dict[str, Any]:
        """Cut at max_length, moving the cut before any vision span it would split."""
        ids = enc["input_ids"]
        cut, closed = vision_safe_cut(ids, self.max_length, self.start_id, self.end_id)
        grids = enc["image_grid_thw"][:closed] if enc["image_grid_thw"] is not None and closed else None
        rows = int(grids.prod(-1).sum()) if grids is not None else 0
        pixels = enc["pixel_values"][:rows] if rows else None
        return {"input_ids": ids[:cut], "labels": enc["labels"][:cut], "pixel_values": pixels, "image_grid_thw": grids}

    # ---- batching ----------------------------------------------------------------------
    def __call__(self, samples: Sequence[Sample | dict | str], *, images=None, for_generation: bool = False) -> dict[str, Any]:
        encs = [self.encode(as_sample(s), None if images is None else images[i], for_generation)
                for i, s in enumerate(samples)]
        batch = pad_rows([(e["input_ids"], e.get("labels")) for e in encs], self.pad_id, for_generation)
        for key in ("pixel_values", "image_grid_thw"):
            parts = [e[key] for e in encs if e[key] is not None]
            if parts:
                batch[key] = torch.cat(parts)
        return batch

