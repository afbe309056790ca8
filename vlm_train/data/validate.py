"""Checks every sample before training: structure, media, boxes.

``Validator.check(sample)`` raises ``SampleProblem`` naming the problem class and reason, and
otherwise normalises the sample in place: media paths become absolute real paths inside a
root, and ``image_sizes`` holds the measured size of each image. Media are opened once per
path (a cache), so a dataset asking many questions about one image pays for one decode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vlm_train.data import coords
from vlm_train.data.errors import (
    BAD_BOX,
    BAD_FIELD,
    BAD_ROLE,
    NO_ASSISTANT,
    PLACEHOLDER_MISMATCH,
    RESERVED_TOKEN,
    TOO_LONG,
    UNSUPPORTED,
    SampleProblem,
)
from vlm_train.data.media import MediaError, image_size, load_image, resolve_path
from vlm_train.data.sample import ROLES, Box, Sample

PART_TYPES = ("text", "image", "video", "tool_call", "tool_response")
_PLACEHOLDERS = ("<image>", "<video>")


@dataclass
class Validator:
    """Validates samples against image roots.

    Attributes:
        roots: roots every media path must resolve into (each sample's own
            ``meta["image_root"]`` is added for that sample).
        max_pixels: decompression-bomb cap (pixels claimed by an image header).
        decode: fully decode each image once (catches truncated files); False reads headers only.
        require_assistant: a training sample needs an assistant turn; prompt-only sets do not.
        length_fn: token length of a (validated) sample; with ``max_length`` longer samples
            are ``too_long`` problems.
        max_length: longest sample accepted when ``length_fn`` is set.
        reserved_text: the family's special tokens; data text holding one literally is
            refused (the tokenizer would read it as the real token: a forged turn or image).
        takes_video: whether the family's input builder takes video parts.
        require_image: every sample needs an image (GRPO: rollouts crop the first image).
        num_frames: frames a video is sampled to; with ``decode`` those frames are decoded
            once, so a video truncated after its first frame is caught here.
        max_images: most image parts (crops included) one sample may hold.
    """

    roots: Sequence[str | os.PathLike] = ()
    max_pixels: int = 64_000_000
    decode: bool = True
    require_assistant: bool = True
    length_fn: Callable[[Sample], int] | None = None
    max_length: int | None = None
    reserved_text: Sequence[str] = ()
    takes_video: bool = True
    require_image: bool = False
    num_frames: int = 8
    max_images: int | None = None
    _images: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[int, int]] | MediaError] = field(default_factory=dict)
    _videos: dict[tuple[str, tuple[str, ...]], str | MediaError] = field(default_factory=dict)

    def _roots_for(self, sample: Sample) -> tuple[str, ...]:
        own = sample.meta.get("image_root")
        return tuple(dict.fromkeys(([str(own)] if own else []) + [str(r) for r in self.roots]))

    def image(self, path: str, roots: tuple[str, ...]) -> tuple[str, tuple[int, int]]:
        """(absolute real path, (w, h)) of an image; SampleProblem when unusable."""
        key = (path, roots)
        if key not in self._images:
            try:
                real = str(resolve_path(path, roots))
                if self.decode:
                    size = load_image(real, roots, self.max_pixels).size
                else:
                    size = image_size(real, roots, self.max_pixels)
                self._images[key] = (real, size)
            except MediaError as e:
                self._images[key] = e
        got = self._images[key]
        if isinstance(got, MediaError):
            raise SampleProblem(got.kind, str(got))
        return got

    def prefetch(self, samples: Sequence[Sample], workers: int | None = None) -> None:
        """Open every image of ``samples`` on a thread pool (decoding releases the GIL), so
        the in-order ``check`` calls find them cached. Problems are cached, not raised."""
        keys = {}
        for s in samples:
            roots = self._roots_for(s)
            for m in s.messages:
                for p in m.content:
                    for path in (p.media if p.type in ("image", "tool_response") else None, p.source):
                        if path and (path, roots) not in self._images:
                            keys[(path, roots)] = None
        n = workers if workers is not None else min(8, os.cpu_count() or 1)
        if n <= 1 or len(keys) < 2:
            return

        def one(key: tuple[str, tuple[str, ...]]) -> None:
            try:
                self.image(*key)
            except SampleProblem:
                pass  # cached; reported by check() in file order

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(one, keys))

    def video(self, path: str, roots: tuple[str, ...]) -> str:
        key = (path, roots)
        if key not in self._videos:
            try:
                from vlm_train.data.video import video_info

                real = str(resolve_path(path, roots))
                video_info(real, roots)
                if self.decode:  # the frames training will read: a truncated tail fails here
                    from vlm_train.data.video import load_video

                    load_video(real, roots, self.num_frames)
                self._videos[key] = real
            except MediaError as e:
                self._videos[key] = e
        got = self._videos[key]
        if isinstance(got, MediaError):
            raise SampleProblem(got.kind, str(got))
        return got

    def check(self, sample: Sample) -> None:
        """Validate ``sample`` and normalise it in place (see module docstring)."""
        self._structure(sample)
        roots = self._roots_for(sample)
        sizes: list[tuple[int, int]] = []
        first_size: tuple[int, int] | None = None
        for m in sample.messages:
            for p in m.content:
                if p.type == "image":
                    p.media, size = self.image(p.media or "", roots)
                    sizes.append(size)
                    first_size = first_size or size
                elif p.type == "video":
                    p.media = self.video(p.media or "", roots)
                elif p.type == "tool_response" and (p.media or p.source):
                    if p.media:
                        p.media, _ = self.image(p.media, roots)
                    if p.source:
                        p.source, src_size = self.image(p.source, roots)
                        _check_box(p.box, src_size, "tool response box")
        if sample.image_sizes and len(sample.image_sizes) == len(sizes):
            for i, (given, real) in enumerate(zip(sample.image_sizes, sizes, strict=True)):
                if tuple(given) != tuple(real):
                    raise SampleProblem(
                        BAD_FIELD, f"image {i}: the data says {given[0]}x{given[1]} but the file is {real[0]}x{real[1]}"
                    )
        sample.image_sizes = sizes
        for m in sample.messages:
            for p in m.content:
                if p.type == "tool_call":
                    if p.box is None:
                        raise SampleProblem(BAD_BOX, f"tool call {p.text or p.tool!r} has no box")
                    _check_box(p.box, first_size, f"tool call {p.text or ''}".strip())
        for what, items in (("target", sample.targets), ("region", sample.regions)):
            for t in items:
                if not 0 <= t.image_index < len(sizes):
                    raise SampleProblem(
                        BAD_FIELD, f"{what} {t.phrase!r} refers to image {t.image_index}, sample has {len(sizes)}"
                    )
                _check_box(t.box, sizes[t.image_index], f"{what} {t.phrase!r}")
        if self.length_fn is not None and self.max_length is not None:
            n = self.length_fn(sample)
            if n > self.max_length:
                raise SampleProblem(TOO_LONG, f"{n} tokens, over max_length {self.max_length}")

    def _reserved(self, sample: Sample) -> None:
        texts = [(f"message {k}", t) for k, m in enumerate(sample.messages) for p in m.content
                 for t in (p.text, p.label) if t]
        texts += [(f"phrase of {what}", t.phrase) for what, items in (("target", sample.targets), ("region", sample.regions))
                  for t in items if t.phrase]
        for where, text in texts:
            hit = next((tok for tok in self.reserved_text if tok in text), None)
            if hit:
                raise SampleProblem(
                    RESERVED_TOKEN, f"{where}: the text holds the special token {hit!r} literally; the tokenizer "
                    "would read it as the real one (remove or escape it in the data)")

    def _structure(self, sample: Sample) -> None:
        if not sample.messages:
            raise SampleProblem(BAD_FIELD, "sample has no messages")
        self._reserved(sample)
        parts = [p for m in sample.messages for p in m.content]
        if not self.takes_video and any(p.type == "video" for p in parts):
            raise SampleProblem(UNSUPPORTED, "video part, but this model family takes images only")
        if self.require_image and not any(p.type == "image" for p in parts):
            raise SampleProblem(UNSUPPORTED, "no image: GRPO rollouts crop the sample's first image")
        n_images = len(sample.image_parts())
        if self.max_images is not None and n_images > self.max_images:
            raise SampleProblem(TOO_LONG, f"{n_images} images, over data.max_images_per_sample={self.max_images}")
        prev = None
        for k, m in enumerate(sample.messages):
            if m.role not in ROLES:
                raise SampleProblem(
                    BAD_ROLE, f"message {k}: unknown role {m.role!r} (expected one of {', '.join(ROLES)})"
                )
            for p in m.content:
                if p.type not in PART_TYPES:
                    raise SampleProblem(BAD_FIELD, f"message {k}: unknown part type {p.type!r}")
                if p.type == "text" and p.text and any(t in p.text for t in _PLACEHOLDERS):
                    raise SampleProblem(
                        PLACEHOLDER_MISMATCH, f"message {k}: literal media placeholder left in text {p.text[:60]!r}"
                    )
                if p.type in ("image", "video") and not p.media:
                    raise SampleProblem(BAD_FIELD, f"message {k}: {p.type} part without a path")
            if m.role == "tool" and not (
                prev is not None and prev.role == "assistant" and prev.content and prev.content[-1].type == "tool_call"
            ):
                raise SampleProblem(BAD_FIELD, f"message {k}: tool response without a preceding tool call")
            prev = m
        if self.require_assistant:
            learned = [
                m
                for m in sample.messages
                if m.role == "assistant" and any((p.text or "").strip() or p.type == "tool_call" for p in m.content)
            ]
            if not learned:
                raise SampleProblem(NO_ASSISTANT, "no assistant turn to learn from")
            if sample.messages[-1].role == "tool":
                raise SampleProblem(
                    NO_ASSISTANT, "sample ends with a tool response: the assistant must continue after it"
                )


def _check_box(box: Box | None, size: tuple[int, int] | None, what: str) -> None:
    if box is None:
        raise SampleProblem(BAD_BOX, f"{what}: missing box")
    try:  # samples built in code (not read by a reader) reach here too
        coords.parse_numbers(box.as_list())
    except ValueError as e:
        raise SampleProblem(BAD_BOX, f"{what}: {e}") from None
    problem = coords.box_problem(box, *(size or (None, None)))
    if problem:
        raise SampleProblem(BAD_BOX, f"{what}: {problem}")


def real_roots(roots: Sequence[str | os.PathLike]) -> list[str]:
    """Resolved, de-duplicated roots (order kept)."""
    out: list[str] = []
    for r in roots:
        rr = str(Path(r).resolve())
        if rr not in out:
            out.append(rr)
    return out
