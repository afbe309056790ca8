"""Canonical samples -> InternVL3.5 model inputs (ids, attention mask, labels, pixel tiles).

The text is rendered exactly as the checkpoint's chat template renders the same messages
(so prompt ids equal the HF processor's), each image placeholder is expanded to
``<img>`` + ``<IMG_CONTEXT>`` x (tokens per tile x tiles) + ``</img>`` as the processor does,
and the whole string is tokenised once. Labels come from character spans: only assistant
content and its ``<|im_end|>`` are learned (docs/models.md, "InternVL3.5"); crops returned by the tool
are inputs, never targets.

Pixel tiles come from the checkpoint's own image processor, in the order the placeholders
appear, so batches may mix any number of images (and text-only samples) per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from vlm_train.models.internvl.grounding import COORDS
from vlm_train.models.internvl.template import IMAGE_TOKEN


@dataclass
class Rendered:
    text: str
    learn_spans: list[tuple[int, int]]
    images: list[Image.Image]
    frames: set[int] = field(default_factory=set)
    """Indices into ``images`` that are video frames (one tile each, no dynamic tiling)."""


class InternVLInputs:
    """The family's InputBuilder (see vlm_train.models.base.InputBuilder)."""

    def __init__(
        self,
        processor: Any,
        chat: ChatFormat,
        image_roots: Sequence[str] = (),
        max_length: int | None = None,
        max_image_pixels: int = 64_000_000,
        min_crop_size: int = 4,
        max_tiles: int | None = None,
        num_frames: int = 8,
    ):
        self.processor, self.chat = processor, chat
        self.num_frames = num_frames
        self.tok = processor.tokenizer
        self.image_roots = list(image_roots)
        self.max_length = max_length
        self.max_image_pixels = max_image_pixels
        self.min_crop_size = min_crop_size
        self.max_tiles = max_tiles
        self.seq_len = processor.image_seq_length
        self.pad_id = self.tok.pad_token_id
        self.start_id = self.tok.convert_tokens_to_ids(processor.start_image_token)
        self.end_id = self.tok.convert_tokens_to_ids(processor.end_image_token)

    # ---- rendering ---------------------------------------------------------------------
    def render(self, sample: Sample, images: Sequence[Image.Image] | None, for_generation: bool) -> Rendered:
        msgs = sample.messages
        if for_generation:
            # Prompt: everything before the final answer, then the assistant header.
            msgs = prompt_messages(msgs)
        if images is None:
            # The one crop-at-render path (data/media.py -> tools/crop.py), shared by families.
            images = load_sample_images(
                dataclasses.replace(sample, messages=msgs), self.image_roots, self.max_image_pixels,
                min_crop_size=self.min_crop_size,
            )
        it, chat = iter(images), self.chat
        text, spans, out_images = [], [], []
        frames: set[int] = set()
        pos = 0
        originals: dict[str, Image.Image] = {}
        # A call's box is relative to the image it names, else to the latest image shown.
        last_size: tuple[int, int] | None = None

        def emit(s: str, learn: bool = False) -> None:
            nonlocal pos
            text.append(s)
            if learn and s:
                spans.append((pos, pos + len(s)))
            pos += len(s)

        def next_image(part: Part) -> Image.Image:
            nonlocal last_size
            im = next(it)
            if part.type == "image":
                last_size = im.size
                if part.media:
                    originals.setdefault(part.media, im)
            return im

        for m in msgs:
            if m.role == "tool":
                emit(chat.tool_response_open_text())
                for p in m.content:
                    if p.type == "tool_response" and (p.media or p.source):
                        out_images.append(next_image(p))
                        emit(IMAGE_TOKEN + "\n")
                    elif p.text:
                        emit(p.text + "\n")
                # Each item ends its own line, so the close has no leading newline.
                emit(f"{chat.tool_response_close}{chat.turn_end}\n")
                continue
            emit(chat.header(m.role))
            learn = m.role == "assistant"
            for p in m.content:
                if p.type == "image":
                    out_images.append(next_image(p))
                    emit(IMAGE_TOKEN + "\n", False)
                elif p.type == "video":
                    # InternVL's video chat: uniformly sampled frames, one tile each, each
                    # introduced as "Frame{i}: <image>" on its own line.
                    from vlm_train.data.video import load_video

                    for i, frame in enumerate(load_video(p.media, self.image_roots, self.num_frames)[0]):
                        frames.add(len(out_images))
                        out_images.append(frame)
                        emit(f"Frame{i + 1}: {IMAGE_TOKEN}\n", False)
                elif p.type == "text":
                    emit(p.text or "", learn)
                elif p.type == "tool_call":
                    size = originals[p.media].size if p.media in originals else last_size
                    emit(chat.tool_call(p.tool or "crop", tool_call_args(p, size, COORDS)), learn)
            emit(chat.turn_end, learn)
            emit("\n")
        if for_generation:
            emit(chat.assistant_header())
        return Rendered("".join(text), spans, out_images, frames)

    # ---- tokenisation ------------------------------------------------------------------
    def _pixels(self, images: list[Image.Image], frames: set[int] = frozenset()) -> tuple[torch.Tensor | None, list[int]]:
        if not images:
            return None, []
        if frames:  # video frames are single tiles: process runs of images and frames apart
            runs: list[tuple[bool, list[Image.Image]]] = []
            for i, im in enumerate(images):
                if runs and runs[-1][0] == (i in frames):
                    runs[-1][1].append(im)
                else:
                    runs.append((i in frames, [im]))
            parts = [self._tiles(ims, tile=not is_frame) for is_frame, ims in runs]
            return torch.cat([p for p, _ in parts]), [n for _, ns in parts for n in ns]
        return self._tiles(images, tile=True)

    def _tiles(self, images: list[Image.Image], tile: bool) -> tuple[torch.Tensor, list[int]]:
        kw: dict[str, Any] = {"crop_to_patches": tile, "return_tensors": "pt"}
        if self.max_tiles is not None and tile:
            kw["max_patches"] = self.max_tiles
        out = self.processor.image_processor(images=images, **kw)
        n = out["num_patches"]
        return out["pixel_values"], [int(x) for x in (n.tolist() if hasattr(n, "tolist") else n)]

    def encode(self, sample: Sample, images=None, for_generation: bool = False) -> dict[str, Any]:
        r = self.render(sample, images, for_generation)
        pixels, tiles = self._pixels(r.images, r.frames)
        # Expand every placeholder as the HF processor does; keep learn spans aligned.
        proc = self.processor
        text, spans = expand_placeholders(
            r.text, IMAGE_TOKEN,
            lambda k: proc.start_image_token + IMAGE_TOKEN * (self.seq_len * tiles[k]) + proc.end_image_token,
            r.learn_spans,
        )
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=not for_generation)
        ids = enc["input_ids"]
        out: dict[str, Any] = {"input_ids": ids, "pixel_values": pixels, "tiles": tiles}
        if not for_generation:
            out["labels"] = span_labels(ids, enc["offset_mapping"], spans)
            if self.max_length is not None and len(ids) > self.max_length:
                out = self._truncate(out)
        return out

    def _truncate(self, enc: dict[str, Any]) -> dict[str, Any]:
        """Cut at max_length, moving the cut before any image span it would split."""
        ids = enc["input_ids"]
        cut, kept_images = vision_safe_cut(ids, self.max_length, self.start_id, self.end_id)
        tiles = enc["tiles"][:kept_images]
        n_tiles = sum(tiles)
        pixels = enc["pixel_values"][:n_tiles] if enc["pixel_values"] is not None and n_tiles else None
        return {"input_ids": ids[:cut], "labels": enc["labels"][:cut], "pixel_values": pixels, "tiles": tiles}

    # ---- batching ----------------------------------------------------------------------
    def __call__(self, samples: Sequence[Sample | dict | str], *, images=None, for_generation: bool = False) -> dict[str, Any]:
        samples = [as_sample(s) for s in samples]
        encs = [self.encode(s, None if images is None else images[i], for_generation) for i, s in enumerate(samples)]
        batch = pad_rows([(e["input_ids"], e.get("labels")) for e in encs], self.pad_id, for_generation)
        pix = [e["pixel_values"] for e in encs if e["pixel_values"] is not None]
        if pix:
            batch["pixel_values"] = torch.cat(pix)
        return batch

