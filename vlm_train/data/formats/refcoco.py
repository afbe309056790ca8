"""RefCOCO-style grounding JSONL (docs/models.md, "RefCOCO protocol").

``{"image", "sent", "bbox": [x1, y1, x2, y2] (pixels), "width", "height"}``. The file holds a
box, not a text answer: the reader renders the prompt and the answer with the family's
grounding prompt and box text (ReadOptions), and keeps the box as the sample's target.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_train.data import coords
from vlm_train.data.errors import BAD_BOX, BAD_FIELD, DataIssue, SampleProblem
from vlm_train.data.formats.base import ReadOptions, record_id, require_dict, samples_from_records, stamp, with_id
from vlm_train.data.formats.jsonio import read_records, write_jsonl
from vlm_train.data.sample import Box, GroundingTarget, Message, Part, Sample

_KNOWN = ("image", "sent", "bbox", "width", "height", "id")


def record_to_sample(obj: Any, source: str, line: int, opts: ReadOptions) -> Sample:
    obj = require_dict(obj, "record")
    image, sent = obj.get("image"), obj.get("sent")
    if not isinstance(image, str) or not image:
        raise SampleProblem(BAD_FIELD, "'image' must be a non-empty string")
    if not isinstance(sent, str) or not sent.strip():
        raise SampleProblem(BAD_FIELD, "'sent' must be a non-empty string")
    try:
        box = Box(*coords.parse_numbers(obj.get("bbox")))
    except ValueError as e:
        raise SampleProblem(BAD_BOX, f"'bbox': {e}") from None
    w, h = obj.get("width"), obj.get("height")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise SampleProblem(BAD_FIELD, f"'width' and 'height' must be positive integers, got {w!r}, {h!r}")
    problem = coords.box_problem(box, w, h)
    if problem:
        raise SampleProblem(BAD_BOX, problem)
    messages = [
        Message("user", [Part("image", media=image), Part("text", text=opts.prompt(sent))]),
        Message("assistant", [Part("text", text=opts.answer(sent, box, w, h))]),
    ]
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    sid, id_meta = record_id(obj, source, line)
    sample = Sample(
        id=sid,
        messages=messages,
        image_sizes=[(w, h)],
        targets=[GroundingTarget(sent, box)],
        meta=({"extra": extra} if extra else {}) | id_meta,
    )
    return stamp(sample, source, line, opts.root_for(source))


def read(path: str | Path, opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    opts = opts or ReadOptions()
    yield from samples_from_records(read_records(path), str(path), lambda o, s, ln: [record_to_sample(o, s, ln, opts)])


def sample_to_record(s: Sample) -> dict[str, Any]:
    if not s.targets:
        raise ValueError(f"sample {s.id}: RefCOCO rows need a grounding target (phrase + box)")
    t = s.targets[0]
    images = s.media("image")
    if not images or t.image_index >= len(s.image_sizes):
        raise ValueError(f"sample {s.id}: RefCOCO rows need the image and its size")
    w, h = s.image_sizes[t.image_index]
    rec: dict[str, Any] = {
        "image": images[t.image_index],
        "sent": t.phrase,
        "bbox": t.box.as_list(),
        "width": w,
        "height": h,
    }
    rec.update(s.meta.get("extra", {}))
    return with_id(s, rec)


def write(samples: list[Sample], path: str | Path) -> None:
    write_jsonl(path, [sample_to_record(s) for s in samples])
