"""LLaVA-style conversation files (docs/models.md, "Seed data formats").

One record: ``{"id", "image": path | [paths], "video": path, "conversations": [{"from":
"system"|"human"|"gpt", "value": "<image>\\n..."}]}`` in JSONL, a JSON list, or the wrapped
``{"conversations": [record, ...]}``. Several families publish files of this shape, so one
module reads and writes them all. ``<image>`` / ``<video>`` placeholders become typed parts in place;
crop calls in gpt turns become real tool calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_train.data.errors import BAD_FIELD, BAD_ROLE, PLACEHOLDER_MISMATCH, DataIssue, SampleProblem
from vlm_train.data.formats.base import (
    ReadOptions,
    assistant_messages,
    media_list,
    record_id,
    require_dict,
    samples_from_records,
    stamp,
    with_id,
)
from vlm_train.data.formats.jsonio import read_records, write_json, write_jsonl
from vlm_train.data.sample import Message, Part, Sample
from vlm_train.data.toolcalls import join_tool_calls

ROLES_IN = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
ROLES_OUT = {"user": "human", "assistant": "gpt", "system": "system"}
_PLACEHOLDER = re.compile(r"<image>|<video>")
_KNOWN_KEYS = ("id", "image", "video", "conversations")


def split_placeholders(value: str, images: Iterator[str], videos: Iterator[str]) -> list[Part]:
    """Text with ``<image>``/``<video>`` placeholders -> typed parts (one newline after each
    placeholder belongs to it, as the families render a media item followed by a newline)."""
    parts: list[Part] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(value):
        if m.start() > pos:
            parts.append(Part("text", text=value[pos : m.start()]))
        kind = "image" if m[0] == "<image>" else "video"
        parts.append(Part(kind, media=next(images if kind == "image" else videos)))
        pos = m.end() + (1 if value.startswith("\n", m.end()) else 0)
    if pos < len(value):
        parts.append(Part("text", text=value[pos:]))
    return parts


def join_placeholders(parts: list[Part]) -> str:
    return "".join(
        "<image>\n" if p.type == "image" else "<video>\n" if p.type == "video" else (p.text or "") for p in parts
    )


def _count(turns: list[dict[str, Any]], token: str, roles: tuple[str, ...]) -> int:
    return sum(str(t.get("value", "")).count(token) for t in turns if ROLES_IN.get(t.get("from", "")) in roles)


def record_to_sample(obj: Any, source: str, line: int, opts: ReadOptions) -> Sample:
    """One conversation record -> canonical sample (SampleProblem on bad content)."""
    obj = require_dict(obj, "sample")
    images, videos = media_list(obj.get("image"), "image"), media_list(obj.get("video"), "video")
    convs = obj.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise SampleProblem(BAD_FIELD, "'conversations' must be a non-empty list of turns")
    turns = [require_dict(t, f"conversations[{k}]") for k, t in enumerate(convs)]
    for k, t in enumerate(turns):
        if t.get("from") not in ROLES_IN:
            raise SampleProblem(
                BAD_ROLE, f"conversations[{k}]: unknown role {t.get('from')!r} (expected system, human or gpt)"
            )
        if not isinstance(t.get("value"), str):
            raise SampleProblem(BAD_FIELD, f"conversations[{k}]: 'value' must be a string")
    for token, media in (("<image>", images), ("<video>", videos)):
        if _count(turns, token, ("assistant",)):
            raise SampleProblem(PLACEHOLDER_MISMATCH, f"{token} placeholder in a gpt turn (media go in human turns)")
        n = _count(turns, token, ("user", "system"))
        first_user = next((t for t in turns if ROLES_IN[t["from"]] == "user"), None)
        if n == 0 and len(media) == 1 and first_user is not None:
            # The official loader of this layout puts a lone image in front of the first question
            # (docs/models.md, "Seed data formats").
            first_user["value"] = f"{token}\n" + first_user["value"]
            n = 1
        if n != len(media):
            raise SampleProblem(PLACEHOLDER_MISMATCH, f"{n} {token} placeholders but {len(media)} {token[1:-1]} paths")
    size = None
    if isinstance(obj.get("width"), int) and isinstance(obj.get("height"), int) and len(images) == 1:
        size = (obj["width"], obj["height"])
    it_img, it_vid = iter(images), iter(videos)
    messages: list[Message] = []
    for t in turns:
        role = ROLES_IN[t["from"]]
        if role == "assistant":
            messages += assistant_messages(t["value"], images, size, opts)
        else:
            messages.append(Message(role, split_placeholders(t["value"], it_img, it_vid)))
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_KEYS}
    sid, id_meta = record_id(obj, source, line)
    sample = Sample(
        id=sid,
        messages=messages,
        image_sizes=[size] if size else [],
        meta=({"extra": extra} if extra else {}) | id_meta,
    )
    return stamp(sample, source, line, opts.root_for(source))


def read(path: str | Path, opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    opts = opts or ReadOptions()
    yield from samples_from_records(
        read_records(path, unwrap_key="conversations"), str(path), lambda o, s, ln: [record_to_sample(o, s, ln, opts)]
    )


def assistant_chains(messages: list[Message]) -> list[list[Message]]:
    """Group messages into turns: an assistant message, the tool messages answering its calls
    and the assistant messages continuing after them form one chain."""
    chains: list[list[Message]] = []
    for m in messages:
        prev = chains[-1] if chains else None
        continues = (
            prev is not None
            and prev[0].role == "assistant"
            and (m.role == "tool" or (m.role == "assistant" and prev[-1].role == "tool"))
        )
        if continues:
            prev.append(m)
        else:
            chains.append([m])
    return chains


def sample_to_record(s: Sample) -> dict[str, Any]:
    images = [p.media for m in s.messages if m.role != "assistant" for p in m.content if p.type == "image" and p.media]
    videos = [p.media for m in s.messages for p in m.content if p.type == "video" and p.media]
    convs = []
    for chain in assistant_chains(s.messages):
        head = chain[0]
        if head.role == "assistant":
            convs.append({"from": "gpt", "value": join_tool_calls(chain)})
        elif head.role == "tool":
            raise ValueError(
                f"sample {s.id}: a tool message without a preceding call cannot be written as a conversation"
            )
        else:
            convs.append({"from": ROLES_OUT[head.role], "value": join_placeholders(head.content)})
    rec: dict[str, Any] = {}
    if images:
        rec["image"] = images[0] if len(images) == 1 else images
    if videos:
        rec["video"] = videos[0] if len(videos) == 1 else videos
    rec["conversations"] = convs
    rec.update(s.meta.get("extra", {}))
    return with_id(s, rec)


def write(samples: list[Sample], path: str | Path) -> None:
    """JSONL, or a JSON list when ``path`` ends in ``.json``."""
    records = [sample_to_record(s) for s in samples]
    if str(path).endswith(".json"):
        write_json(path, records)
    else:
        write_jsonl(path, records)
