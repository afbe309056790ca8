"""Prompts for inference: any data format the readers take, or a plain prompts JSONL.

Plain prompts JSONL, one object per line::

    {"id": "a", "prompt": "Where is the red circle?", "images": ["a.png"]}
    {"id": "b", "messages": [{"role": "user", "content": "<image>\\n<image>\\nWhat differs?"}], "images": ["x.png", "y.png"]}
    {"id": "c", "prompt": "What happens?", "video": "clip.mp4"}

``<image>`` / ``<video>`` placeholders place the media in the text; without placeholders the
images (then the video) come before the text of the first user turn. Content may also be a list
of ``{"type": "text", "text"}`` / ``{"type": "image"}`` / ``{"type": "video"}`` parts taking the
media in order. Relative paths resolve against ``image_root`` (default: the file's folder).

From the training formats the prompt is each sample's conversation before its final answer.
Every media file is checked before any model loads: a missing or unreadable image or video is a
``PromptError`` naming the file and line (or is skipped and reported with ``on_error: skip``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vlm_train.data.errors import BAD_FIELD, DataIssue, SampleProblem
from vlm_train.data.formats.base import ReadOptions, stamp
from vlm_train.data.formats.conversations import split_placeholders
from vlm_train.data.sample import Message, Part, Sample, prompt_messages


class PromptError(ValueError):
    """Unusable prompts; the message names the file and line of each problem."""


@dataclass
class Prompts:
    samples: list[Sample]
    image_roots: list[str]
    skipped: list[DataIssue] = field(default_factory=list)


def _looks_plain(path: Path) -> bool:
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                return False
            if not isinstance(obj, dict):
                return False
            if "prompt" in obj or "video" in obj:
                return True
            msgs = obj.get("messages")
            return isinstance(msgs, list) and bool(msgs) and isinstance(msgs[-1], dict) and msgs[-1].get("role") != "assistant" \
                and "image_sizes" not in obj
    return False


def _media_list(obj: dict[str, Any], key: str) -> list[str]:
    v = obj.get(key, [])
    v = [v] if isinstance(v, str) else v
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise SampleProblem(BAD_FIELD, f"{key!r} must be a path or a list of paths")
    return v


def _parts(content: Any, images: Iterator[str], videos: Iterator[str]) -> list[Part]:
    if isinstance(content, str):
        return split_placeholders(content, images, videos)
    if not isinstance(content, list):
        raise SampleProblem(BAD_FIELD, "message content must be a string or a list of parts")
    out = []
    for p in content:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            out.append(Part("text", text=str(p.get("text", ""))))
        elif kind in ("image", "video"):
            out.append(Part(kind, media=next(images if kind == "image" else videos)))
        else:
            raise SampleProblem(BAD_FIELD, f"unknown content part {p!r}")
    return out


def record_to_sample(obj: Any, source: str, line: int, root: str) -> Sample:
    if not isinstance(obj, dict):
        raise SampleProblem(BAD_FIELD, "a prompt record must be a JSON object")
    images, videos = _media_list(obj, "images"), _media_list(obj, "video")
    it_i, it_v = iter(images), iter(videos)
    try:
        if "messages" in obj:
            msgs = obj["messages"]
            if not isinstance(msgs, list) or not msgs:
                raise SampleProblem(BAD_FIELD, "'messages' must be a non-empty list")
            messages = [Message(str(m.get("role", "user")), _parts(m.get("content", ""), it_i, it_v)) for m in msgs]
        elif isinstance(obj.get("prompt"), str):
            messages = [Message("user", _parts(obj["prompt"], it_i, it_v))]
        else:
            raise SampleProblem(BAD_FIELD, "needs 'prompt' (a string) or 'messages'")
    except StopIteration:
        raise SampleProblem(BAD_FIELD, "more <image>/<video> placeholders than 'images'/'video' entries") from None
    rest = [Part("image", media=m) for m in it_i] + [Part("video", media=m) for m in it_v]
    if rest:  # media without placeholders open the first user turn
        first = next(i for i, m in enumerate(messages) if m.role == "user") if any(m.role == "user" for m in messages) else 0
        messages[first] = Message(messages[first].role, rest + messages[first].content)
    sid = str(obj["id"]) if obj.get("id") is not None else f"{Path(source).name}:{line}"
    return stamp(Sample(id=sid, messages=messages), source, line, root)


def _read_plain(path: Path, root: str) -> Iterator[Sample | DataIssue]:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield record_to_sample(json.loads(line), str(path), i, root)
        except json.JSONDecodeError as e:
            yield DataIssue(BAD_FIELD, f"invalid JSON: {e.msg}", str(path), i)
        except SampleProblem as e:
            yield DataIssue(e.kind, e.reason, str(path), i)


def read_prompts(path: str, fmt: str = "auto", image_root: str | None = None, data_cfg: Any = None,
                 family: Any = None) -> Prompts:
    """Prompt samples of ``path`` (final answers dropped), media checked.

    Raises:
        PromptError: a problem and ``data_cfg.on_error`` is ``raise``; or no usable prompt.
    """
    from vlm_train.data import formats
    from vlm_train.data.load import _family_text
    from vlm_train.data.validate import Validator, real_roots

    p = Path(path)
    opts = ReadOptions(image_root=image_root, **_family_text(family))
    root = opts.root_for(p)
    plain = fmt == "prompts" or (fmt == "auto" and _looks_plain(p))
    items = list(_read_plain(p, root) if plain else formats.read(p, fmt, opts))
    roots = [root, *(data_cfg.image_roots if data_cfg else [])]
    validator = Validator(roots=roots, require_assistant=False, max_pixels=getattr(data_cfg, "max_image_pixels", 64_000_000))
    samples, issues, seen = [], [], set()
    for item in items:
        if isinstance(item, DataIssue):
            issues.append(item)
            continue
        if item.meta.get("image_root"):
            roots.append(str(item.meta["image_root"]))
        prompt = replace(item, messages=prompt_messages(item.messages))
        try:
            validator.check(prompt)
        except SampleProblem as e:
            issues.append(DataIssue(e.kind, e.reason, item.meta.get("source", str(p)), item.meta.get("line"), item.id))
            continue
        if prompt.id in seen:
            issues.append(DataIssue(BAD_FIELD, f"duplicate id {prompt.id!r} (ids name output lines)", str(p), item.meta.get("line"), item.id))
            continue
        seen.add(prompt.id)
        samples.append(prompt)
    on_error = getattr(data_cfg, "on_error", "raise")
    if issues and (on_error == "raise" or not samples):
        listed = "\n  ".join(str(i) for i in issues[:10])
        raise PromptError(f"{len(issues)} unusable prompt(s) in {p}:\n  {listed}")
    return Prompts(samples, real_roots(roots), issues)


def chat_prompt(turns: list[tuple[str, str]], question: str, images: list[str], video: str | None = None,
                max_pixels: int = 64_000_000) -> tuple[Sample, list[str]]:
    """A chat's next prompt (the demo): earlier (user, assistant) turns, then ``question``; the
    uploaded media open the first user turn. Returns the checked sample and its media roots.

    Raises:
        PromptError: a missing or unreadable image or video (named).
    """
    from vlm_train.data.validate import Validator

    media = [*images, *([video] if video else [])]
    roots = sorted({str(Path(m).resolve().parent) for m in media})
    msgs: list[dict[str, Any]] = []
    for user, assistant in turns:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    msgs.append({"role": "user", "content": question})
    obj = {"id": "chat", "messages": msgs, "images": [str(Path(m).resolve()) for m in images]}
    if video:
        obj["video"] = str(Path(video).resolve())
    try:
        sample = record_to_sample(obj, "<chat>", len(turns) + 1, roots[0] if roots else ".")
        Validator(roots=roots, require_assistant=False, max_pixels=max_pixels).check(sample)
    except SampleProblem as e:
        raise PromptError(f"{e.reason}") from None
    return sample, roots
