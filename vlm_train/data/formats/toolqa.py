"""Tool-call QnA JSONL of the seed's SFT + R-GRPO trainer (docs/models.md, "Seed data formats").

``{"image_path": p, "QnA": [{"Q": question, "A3": "<think>..{Crop label [x1, y1, x2, y2]}..
</think>\\n\\n<answer>..</answer>"}]}``: each question becomes its own sample; each crop call
becomes a real call of the crop tool, and its (label, box) an annotated region the region
reward can score a rollout's crop against.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_train.data.errors import BAD_FIELD, DataIssue, SampleProblem
from vlm_train.data.formats.base import ReadOptions, assistant_messages, require_dict, samples_from_records, stamp
from vlm_train.data.formats.jsonio import read_records, write_jsonl
from vlm_train.data.sample import GroundingTarget, Message, Part, Sample
from vlm_train.data.toolcalls import join_tool_calls

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_QA_KEYS = ("Q", "A3")


def record_to_samples(obj: Any, source: str, line: int, opts: ReadOptions) -> list[Sample]:
    obj = require_dict(obj, "record")
    image = obj.get("image_path")
    if not isinstance(image, str) or not image:
        raise SampleProblem(BAD_FIELD, "'image_path' must be a non-empty string")
    qna = obj.get("QnA")
    if not isinstance(qna, list) or not qna:
        raise SampleProblem(BAD_FIELD, "'QnA' must be a non-empty list of {Q, A3}")
    root = opts.root_for(source)
    line_extra = {k: v for k, v in obj.items() if k not in ("image_path", "QnA")}
    out = []
    for k, qa in enumerate(qna):
        qa = require_dict(qa, f"QnA[{k}]")
        q, a3 = qa.get("Q"), qa.get("A3")
        if not isinstance(q, str) or not isinstance(a3, str):
            raise SampleProblem(BAD_FIELD, f"QnA[{k}]: 'Q' and 'A3' must be strings")
        messages = [Message("user", [Part("image", media=image), Part("text", text=q)])]
        messages += assistant_messages(a3, [image], None, opts)
        regions = [
            GroundingTarget(p.label or "", p.box)
            for m in messages
            for p in m.content
            if p.type == "tool_call" and p.box is not None
        ]
        meta: dict[str, Any] = {"group": f"{source}:{line}", "qna_index": k}
        answer = _ANSWER.search(a3)
        if answer:
            meta["answer"] = answer.group(1).strip()
        qa_extra = {kk: v for kk, v in qa.items() if kk not in _QA_KEYS}
        if qa_extra or line_extra:
            meta["extra"] = {"qa": qa_extra, "line": line_extra}
        s = Sample(id=f"{Path(source).stem}:{line}:{k}", messages=messages, regions=regions, meta=meta)
        out.append(stamp(s, source, line, root))
    return out


def read(path: str | Path, opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    opts = opts or ReadOptions()
    yield from samples_from_records(read_records(path), str(path), lambda o, s, ln: record_to_samples(o, s, ln, opts))


def sample_to_qa(s: Sample) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(image path, {Q, A3, ...}, line-level extra fields) of one sample."""
    user = next((m for m in s.messages if m.role == "user"), None)
    images = [p.media for p in (user.content if user else []) if p.type == "image" and p.media]
    if len(images) != 1:
        raise ValueError(
            f"sample {s.id}: the tool-call QnA format holds exactly one image per question, got {len(images)}"
        )
    q = "".join(p.text or "" for p in user.content if p.type == "text") if user else ""
    first_assistant = next(i for i, m in enumerate(s.messages) if m.role == "assistant")
    a3 = join_tool_calls(s.messages[first_assistant:])
    extra = s.meta.get("extra", {})
    return images[0], {"Q": q, "A3": a3, **extra.get("qa", {})}, dict(extra.get("line", {}))


def write(samples: list[Sample], path: str | Path) -> None:
    """One line per image: consecutive samples of the same image and group share a line."""
    records: list[dict[str, Any]] = []
    last_key = None
    for s in samples:
        image, qa, line_extra = sample_to_qa(s)
        key = (image, s.meta.get("group", s.id))
        if records and key == last_key:
            records[-1]["QnA"].append(qa)
        else:
            records.append({"image_path": image, "QnA": [qa], **line_extra})
        last_key = key
    write_jsonl(path, records)
