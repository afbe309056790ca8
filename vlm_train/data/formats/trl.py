"""TRL / HF-datasets conversational rows: ``{"messages": [...], "images": [...]}``.

``content`` is a list of ``{"type": "image"}`` / ``{"type": "text", "text": ..}`` items (or a
plain string with ``<image>`` placeholders); the n-th image item takes the n-th entry of
``images`` (a path, or ``{"path": ..}`` as the HF Image feature stores it). Assistant crop
calls in text, or OpenAI-style ``tool_calls``, become real crop calls.
"""

from __future__ import annotations

import json
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
from vlm_train.data.formats.conversations import assistant_chains, split_placeholders
from vlm_train.data.formats.jsonio import read_records, write_jsonl
from vlm_train.data.sample import ROLES, Message, Part, Sample
from vlm_train.data.toolcalls import join_tool_calls

_KNOWN = ("messages", "images", "videos", "id")


def _items(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise SampleProblem(BAD_FIELD, f"{where}.content must be a string or a list of items")
    items = [require_dict(c, f"{where}.content item") for c in content]
    for c in items:
        if c.get("type") not in ("text", "image", "video"):
            raise SampleProblem(BAD_FIELD, f"{where}: unknown content item type {c.get('type')!r}")
    return items


def _openai_calls(calls: Any, where: str) -> str:
    """OpenAI-style ``tool_calls`` -> ``<tool_call>{json}</tool_call>`` text for the call parser."""
    if not isinstance(calls, list):
        raise SampleProblem(BAD_FIELD, f"{where}.tool_calls must be a list")
    out = []
    for c in calls:
        fn = require_dict(c, f"{where}.tool_calls item").get("function", c)
        args = fn.get("arguments", {})
        out.append("<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}) + "</tool_call>")
    return "".join(out)


def record_to_sample(obj: Any, source: str, line: int, opts: ReadOptions) -> Sample:
    obj = require_dict(obj, "row")
    root = opts.root_for(source)
    embed = Path(root) / f"{Path(source).stem}.images"
    images = media_list(obj.get("images"), "images", embed, root)
    videos = media_list(obj.get("videos"), "videos")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise SampleProblem(BAD_FIELD, "'messages' must be a non-empty list")
    it_img, it_vid = iter(images), iter(videos)
    used = {"image": 0, "video": 0}
    messages: list[Message] = []

    def take(kind: str) -> str:
        used[kind] += 1
        try:
            return next(it_img if kind == "image" else it_vid)
        except StopIteration:
            raise SampleProblem(
                PLACEHOLDER_MISMATCH, f"more {kind} items in messages than entries in '{kind}s'"
            ) from None

    class _Lazy:
        def __init__(self, kind: str):
            self.kind = kind

        def __next__(self) -> str:
            return take(self.kind)

    for k, m in enumerate(msgs):
        m = require_dict(m, f"messages[{k}]")
        role = m.get("role")
        if role not in ROLES:
            raise SampleProblem(BAD_ROLE, f"messages[{k}]: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        items = _items(m.get("content", ""), f"messages[{k}]")
        if role == "assistant":
            text = "".join(str(c.get("text") or "") for c in items if c["type"] == "text")
            if any(c["type"] != "text" for c in items):
                raise SampleProblem(PLACEHOLDER_MISMATCH, f"messages[{k}]: media in an assistant message")
            if m.get("tool_calls"):
                text += _openai_calls(m["tool_calls"], f"messages[{k}]")
            messages += assistant_messages(text, images, None, opts)
            continue
        parts: list[Part] = []
        for c in items:
            if c["type"] == "text":
                parts += split_placeholders(str(c.get("text") or ""), _Lazy("image"), _Lazy("video"))  # type: ignore[arg-type]
            else:
                parts.append(Part(c["type"], media=take(c["type"])))
        if role == "tool":
            # The data answers the call itself: its response replaces the crop made from the call.
            if (
                len(messages) >= 2
                and messages[-2].role == "tool"
                and messages[-1].role == "assistant"
                and not messages[-1].text()
            ):
                del messages[-2:]
            parts = [
                Part("tool_response", media=p.media) if p.type == "image" else Part("tool_response", text=p.text)
                for p in parts
            ]
        messages.append(Message(role, parts))
    if used["image"] != len(images) or used["video"] != len(videos):
        raise SampleProblem(
            PLACEHOLDER_MISMATCH,
            f"messages hold {used['image']} image / {used['video']} video items but the row lists {len(images)} / {len(videos)}",
        )
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    sid, id_meta = record_id(obj, source, line)
    sample = Sample(id=sid, messages=messages, meta=({"extra": extra} if extra else {}) | id_meta)
    return stamp(sample, source, line, opts.root_for(source))


def read(path: str | Path, opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    opts = opts or ReadOptions()
    yield from samples_from_records(read_records(path), str(path), lambda o, s, ln: [record_to_sample(o, s, ln, opts)])


def sample_to_record(s: Sample) -> dict[str, Any]:
    images: list[str] = []
    videos: list[str] = []
    out_msgs = []
    for chain in assistant_chains(s.messages):
        head = chain[0]
        if head.role == "assistant":
            out_msgs.append({"role": "assistant", "content": [{"type": "text", "text": join_tool_calls(chain)}]})
            continue
        content = []
        for p in head.content:
            if p.type in ("image", "video") or (p.type == "tool_response" and p.media):
                (images if p.type != "video" else videos).append(p.media or "")
                content.append({"type": "video" if p.type == "video" else "image"})
            else:
                content.append({"type": "text", "text": p.text or ""})
        out_msgs.append({"role": head.role, "content": content})
    rec: dict[str, Any] = {"messages": out_msgs, "images": images}
    if videos:
        rec["videos"] = videos
    rec.update(s.meta.get("extra", {}))
    return with_id(s, rec)


def write(samples: list[Sample], path: str | Path) -> None:
    write_jsonl(path, [sample_to_record(s) for s in samples])
