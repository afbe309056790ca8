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
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from vlm_train.data.media import load_sample_images
from vlm_train.data.sample import Part, Sample, prompt_messages
from vlm_train.models.internvl.grounding import COORDS
from vlm_train.models.internvl.template import IMAGE_TOKEN

IGNORE = -100


@dataclass
class Rendered:
    text: str
    learn_spans: list[tuple[int, int]]
    images: list[Image.Image]
    frames: set[int] = field(default_factory=set)
    """Indices into ``images`` that are video frames (one tile each, no dynamic tiling)."""


def tool_call_text(part: Part, size: tuple[int, int] | None) -> str:
    """``<tool_call>{json}</tool_call>`` with the box in InternVL's 0-1000 convention."""
    args: dict[str, Any] = {}
    if part.box is not None and size is not None:
        args["bbox_2d"] = COORDS.to_values(part.box, *size)
    if part.label:
        args["label"] = part.label
    return "<tool_call>" + json.dumps({"name": part.tool or "crop", "arguments": args}) + "</tool_call>"


class InternVLInputs:
    """The family's InputBuilder (see vlm_train.models.base.InputBuilder)."""

    def __init__(
        self,
        processor: Any,
        image_roots: Sequence[str] = (),
        max_length: int | None = None,
        max_image_pixels: int = 64_000_000,
        min_crop_size: int = 4,
        max_tiles: int | None = None,
        num_frames: int = 8,
    ):
        self.processor = processor
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
        it = iter(images)
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
                emit("<|im_start|>user\n<tool_response>\n")
                for p in m.content:
                    if p.type == "tool_response" and (p.media or p.source):
                        out_images.append(next_image(p))
                        emit(IMAGE_TOKEN + "\n")
                    elif p.text:
                        emit(p.text + "\n")
                emit("</tool_response><|im_end|>\n")
                continue
            emit(f"<|im_start|>{m.role}\n")
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
                    emit(tool_call_text(p, size), learn)
            emit("<|im_end|>", learn)
            emit("\n")
        if for_generation:
            emit("<|im_start|>assistant\n")
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
        pieces, shift, k, spans = [], 0, 0, []
        expanded_at: list[tuple[int, int]] = []  # (orig_pos, delta)
        start = 0
        for idx in _find_all(r.text, IMAGE_TOKEN):
            pieces.append(r.text[start:idx])
            rep = self.processor.start_image_token + IMAGE_TOKEN * (self.seq_len * tiles[k]) + self.processor.end_image_token
            pieces.append(rep)
            expanded_at.append((idx, len(rep) - len(IMAGE_TOKEN)))
            start = idx + len(IMAGE_TOKEN)
            k += 1
        pieces.append(r.text[start:])
        text = "".join(pieces)
        for a, b in r.learn_spans:
            shift = sum(d for p, d in expanded_at if p < a)
            spans.append((a + shift, b + shift))
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=not for_generation)
        ids = enc["input_ids"]
        out: dict[str, Any] = {"input_ids": ids, "pixel_values": pixels, "tiles": tiles}
        if not for_generation:
            labels = [IGNORE] * len(ids)
            j = 0
            for t, (s, e) in enumerate(enc["offset_mapping"]):
                while j < len(spans) and spans[j][1] <= s:
                    j += 1
                if j < len(spans) and s >= spans[j][0] and e <= spans[j][1] and e > s:
                    labels[t] = ids[t]
            out["labels"] = labels
            if self.max_length is not None and len(ids) > self.max_length:
                out = self._truncate(out)
        return out

    def _truncate(self, enc: dict[str, Any]) -> dict[str, Any]:
        """Cut at max_length, moving the cut before any image span it would split."""
        ids, cut = enc["input_ids"], self.max_length
        opened = [i for i in range(cut) if ids[i] == self.start_id]
        closed = [i for i in range(cut) if ids[i] == self.end_id]
        if len(opened) > len(closed):
            cut = opened[-1]
        kept_images = len(closed) if len(opened) > len(closed) else len(opened)
        tiles = enc["tiles"][:kept_images]
        n_tiles = sum(tiles)
        pixels = enc["pixel_values"][:n_tiles] if enc["pixel_values"] is not None and n_tiles else None
        return {"input_ids": ids[:cut], "labels": enc["labels"][:cut], "pixel_values": pixels, "tiles": tiles}

    # ---- batching ----------------------------------------------------------------------
    def __call__(self, samples: Sequence[Sample | dict | str], *, images=None, for_generation: bool = False) -> dict[str, Any]:
        samples = [_as_sample(s) for s in samples]
        encs = [self.encode(s, None if images is None else images[i], for_generation) for i, s in enumerate(samples)]
        width = max(len(e["input_ids"]) for e in encs)
        ids = torch.full((len(encs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        labels = torch.full((len(encs), width), IGNORE, dtype=torch.long)
        for i, e in enumerate(encs):
            n = len(e["input_ids"])
            # Right padding for training; left padding for generation (new tokens append on the right).
            sl = slice(width - n, width) if for_generation else slice(0, n)
            ids[i, sl] = torch.tensor(e["input_ids"])
            mask[i, sl] = 1
            if not for_generation:
                labels[i, sl] = torch.tensor(e["labels"])
        batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if not for_generation:
            batch["labels"] = labels
        pix = [e["pixel_values"] for e in encs if e["pixel_values"] is not None]
        if pix:
            batch["pixel_values"] = torch.cat(pix)
        return batch


def _find_all(text: str, needle: str) -> list[int]:
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + len(needle))
    return out


def _as_sample(s: Sample | dict | str) -> Sample:
    if isinstance(s, Sample):
        return s
    if isinstance(s, str):
        return Sample.from_json(s)
    if "sample" in s:  # a dataset row
        return _as_sample(s["sample"])
    return Sample.from_dict(s)

