"""Ovis2.5 input builder: canonical samples -> a padded batch for training or generation (docs/models.md, "Ovis2.5").

Per sample: render (template.py), tokenize text segments, expand each visual to
``[start] + [atom] * (t*h*w/4) + [end]`` and patchify its pixels. Per batch: right padding with
-100 labels for training, left padding for generation; pixel rows and grid rows concatenated
in the order the atoms appear (row-major over the batch), checked against the atom count.
Truncation to ``max_length`` never cuts a visual span: a span that does not fit is removed
together with its pixel and grid rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlm_train.data.media import load_sample_images
from vlm_train.data.sample import Box, Sample
from vlm_train.models.base import IGNORE
from vlm_train.models.common.batching import as_sample, pad_rows
from vlm_train.models.ovis2_5 import constants as C
from vlm_train.models.ovis2_5.grounding import box_to_floats
from vlm_train.models.ovis2_5.processor import Ovis2_5Processor, VisualInputs
from vlm_train.models.ovis2_5.template import is_visual, render


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    visuals: list[VisualInputs]


class Ovis2_5Inputs:
    """The family's InputBuilder (see vlm_train/models/base.py).

    Args:
        processor: the checkpoint's processor.
        image_roots: roots that ``media`` paths resolve against (absolute paths must lie inside).
        enable_thinking: generation prompts: leave thinking on (no empty think block).
        max_length: truncation length; the processor's ``max_length`` when None.
        num_frames: frames sampled per video file; the processor's ``num_frames`` when None.
        max_image_pixels: decompression-bomb cap for image files.
    """

    def __init__(
        self,
        processor: Ovis2_5Processor,
        image_roots: Sequence[str | os.PathLike] = (),
        enable_thinking: bool = False,
        max_length: int | None = None,
        num_frames: int | None = None,
        max_image_pixels: int = 64_000_000,
        min_crop_size: int = 4,
    ):
        self.processor = processor
        self.min_crop_size = min_crop_size
        self.num_frames = num_frames or processor.num_frames
        self.max_image_pixels = max_image_pixels
        self.tokenizer = processor.tokenizer
        self.image_roots = list(image_roots)
        self.enable_thinking = enable_thinking
        self.max_length = max_length or processor.max_length
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has no pad token")

    # ---- one sample ---------------------------------------------------------------------
    def _visual_parts(self, sample: Sample) -> list[Any]:
        return [p for m in sample.messages for p in m.content if is_visual(p)]

    def _visuals(self, sample: Sample, images: Sequence[Any] | None) -> list[Any]:
        """The sample's visuals in message order: PIL images (crops re-made from their
        originals by the data layer) and, for videos, lists of frames.

        ``images`` may list the image parts only (the InputBuilder contract; videos are then
        read from their files) or every visual part with a video as a list of frames.
        """
        parts = self._visual_parts(sample)
        n_videos = sum(1 for p in parts if p.type == "video")
        if images is not None and len(images) == len(parts):
            return list(images)
        if images is None:
            images = load_sample_images(
                sample, self.image_roots, max_pixels=self.max_image_pixels, min_crop_size=self.min_crop_size
            )
        if len(images) != len(parts) - n_videos:
            raise ValueError(
                f"sample {sample.id}: {len(parts) - n_videos} image parts but {len(images)} images given"
            )
        from vlm_train.data.video import load_video

        it = iter(images)
        return [load_video(p.media, self.image_roots, self.num_frames)[0] if p.type == "video" else next(it) for p in parts]

    def encode(self, sample: Sample, visuals: Sequence[Any], for_generation: bool = False) -> Encoded:
        """Token ids, labels and patchified visuals of one sample (untruncated)."""
        parts = self._visual_parts(sample)
        if len(visuals) != len(parts):
            raise ValueError(f"sample {sample.id}: {len(parts)} visual parts but {len(visuals)} visuals given")
        media = [p.media for p in parts]
        proc = self.processor

        def box_floats(box: Box, ref: str | None, last_image: int | None) -> list[str]:
            # A call's box is in pixels of the image it names, else of the latest image shown.
            if ref is not None and ref in media:
                idx = media.index(ref)
            else:
                idx = last_image if last_image is not None else 0
            if not visuals:
                raise ValueError(f"sample {sample.id}: tool-call box without an image to normalise it by")
            img = visuals[idx]
            img = img[0] if isinstance(img, list) else img
            return box_to_floats(box, img.width, img.height)

        thinking = bool(sample.meta.get("enable_thinking", self.enable_thinking))
        segments = render(sample, box_floats, for_generation=for_generation, enable_thinking=thinking)
        # The images rendered share one budget (the official rule for a negative max_pixels).
        n_images = sum(1 for seg in segments if seg.kind == "image")
        max_pixels = max(proc.min_pixels, proc.max_pixels // n_images) if n_images > 1 else proc.max_pixels
        ids: list[int] = []
        labels: list[int] = []
        encoded: list[VisualInputs] = []
        for seg in segments:
            if seg.kind == "text":
                toks = self.tokenizer.encode(seg.text, add_special_tokens=False)
                ids += toks
                labels += toks if seg.learn else [IGNORE] * len(toks)
                continue
            item = visuals[seg.visual]
            if seg.kind == "video":
                frames = item if isinstance(item, list) else [item]
                vis = proc.preprocess_video(frames)
                start, end = C.VIDEO_START_ID, C.VIDEO_END_ID
            else:
                vis = proc.preprocess_image(item, max_pixels=max_pixels)
                start, end = C.IMAGE_START_ID, C.IMAGE_END_ID
            span = [start] + [C.VISUAL_ATOM_ID] * vis.num_atoms + [end]
            ids += span
            labels += [IGNORE] * len(span)
            encoded.append(vis)
        return Encoded(ids, labels, encoded)

    def truncate(self, enc: Encoded) -> Encoded:
        """Cut to ``max_length`` without splitting a visual span (drops the span's pixels)."""
        if len(enc.input_ids) <= self.max_length:
            return enc
        ids = np.asarray(enc.input_ids)
        starts = np.flatnonzero((ids == C.IMAGE_START_ID) | (ids == C.VIDEO_START_ID))
        ends = np.flatnonzero((ids == C.IMAGE_END_ID) | (ids == C.VIDEO_END_ID))
        cut, keep = self.max_length, len(starts)
        for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
            if e >= self.max_length:
                cut, keep = min(self.max_length, int(s)), i
                break
        return Encoded(enc.input_ids[:cut], enc.labels[:cut], enc.visuals[:keep])

    # ---- batch --------------------------------------------------------------------------
    def __call__(
        self,
        samples: Sequence[Sample | dict | str],
        *,
        images: Sequence[Sequence[Any]] | None = None,
        for_generation: bool = False,
    ) -> dict[str, Any]:
        """Build a batch (see ``InputBuilder``); ``images[i]`` lists sample i's visuals in
        message order (a video is a list of PIL frames)."""
        if images is not None and len(images) != len(samples):
            raise ValueError(f"{len(samples)} samples but images for {len(images)}")
        samples = [as_sample(s) for s in samples]
        encs = []
        for i, s in enumerate(samples):
            visuals = self._visuals(s, images[i] if images is not None else None)
            encs.append(self.truncate(self.encode(s, visuals, for_generation)))
        return self.collate(encs, for_generation)

    def collate(self, encs: Sequence[Encoded], for_generation: bool = False) -> dict[str, Any]:
        batch = pad_rows([(e.input_ids, e.labels) for e in encs], self.pad_id, for_generation)
        ids = batch["input_ids"]
        visuals = [v for e in encs for v in e.visuals]
        n_atoms = int((ids == C.VISUAL_ATOM_ID).sum())
        expected = sum(v.num_atoms for v in visuals)
        assert n_atoms == expected, f"{n_atoms} atom placeholders but grids give {expected} visual tokens"
        if visuals:
            batch["pixel_values"] = torch.cat([v.pixel_values for v in visuals])
            batch["grid_thws"] = torch.tensor([v.grid_thw for v in visuals], dtype=torch.long)
        return batch


def select_rows(batch: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The sub-batch of ``rows`` (pixel and grid rows follow their samples); for phase 2 of
    budgeted thinking."""
    ids = batch["input_ids"]
    out = {k: v[list(rows)] for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    if "grid_thws" not in batch:
        return out
    grids = batch["grid_thws"]
    starts = (ids == C.IMAGE_START_ID) | (ids == C.VIDEO_START_ID)
    per_row = starts.sum(dim=1).tolist()
    first_visual = np.concatenate([[0], np.cumsum(per_row)])
    rows_per_grid = (grids[:, 0] * grids[:, 1] * grids[:, 2]).tolist()
    first_pixel = np.concatenate([[0], np.cumsum(rows_per_grid)])
    pix, grd = [], []
    for r in rows:
        a, b = int(first_visual[r]), int(first_visual[r + 1])
        grd.append(grids[a:b])
        pix.append(batch["pixel_values"][int(first_pixel[a]) : int(first_pixel[b])])
    if sum(len(g) for g in grd):
        out["grid_thws"] = torch.cat(grd)
        out["pixel_values"] = torch.cat(pix)
    return out
