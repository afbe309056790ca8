"""Ovis2.5 chat format (docs/models.md, "Ovis2.5") rendered from canonical samples, with the label rule.

Training (the official SFT formatter): every message is ``<|im_start|>{role}\\n...<|im_end|>\\n``;
user/system items are joined by "\\n" (an image then text gives ``<image>\\nText``); every
assistant turn without its own ``<think>...</think>`` gets ``<think>\\n\\n</think>\\n\\n``
prepended. Learned: assistant content (a data-supplied think block included) through
``<|im_end|>``. Not learned: role headers, the auto-inserted empty think block, the "\\n" after
``<|im_end|>``, system/user/tool turns and visual spans. The final "\\n" is dropped.

Generation (the HF template): history assistant turns keep only the text after their last
``</think>``; the prompt ends with ``<|im_start|>assistant\\n`` plus the empty think block when
thinking is off.

Tool calls and tool responses follow vlm_train/models/base.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from vlm_train.data.sample import Box, Message, Part, Sample, prompt_messages
from vlm_train.models.ovis2_5.constants import EMPTY_THINK, THINK_END

# Qwen3's special tokens in vocabulary order (151643 ...); Ovis2.5 adds none.
QWEN3_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]
# Qwen's vision tokens: Ovis never uses them, so they are suppressed in generation.
UNUSED_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# The HF template as Jinja, for tokenizer.apply_chat_template users.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{%- set content = message['content'] -%}"
    "{%- else -%}{%- set ns = namespace(parts=[]) -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{%- set ns.parts = ns.parts + ['<image>'] -%}"
    "{%- elif item['type'] == 'video' -%}{%- set ns.parts = ns.parts + ['<video>'] -%}"
    "{%- elif item['type'] == 'text' -%}"
    "{%- set ns.parts = ns.parts + [item['text'].replace('<image>', '').replace('<video>', '')] -%}"
    "{%- endif -%}{%- endfor -%}{%- set content = ns.parts | join('\\n') -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}"
    "{{- content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)


@dataclass
class Segment:
    """A piece of a rendered sample: text (learned or not) or one visual (never learned)."""

    kind: str  # "text" | "image" | "video"
    text: str = ""
    learn: bool = False
    visual: int = -1  # index into the sample's visual list (message order)


def _strip_visual_tags(text: str) -> str:
    return text.replace("<image>", "").replace("<video>", "")


def is_visual(part: Part) -> bool:
    """Images, videos and image tool responses (a file, or a crop of ``source`` at ``box``),
    as ``Sample.image_parts`` counts them plus videos."""
    if part.type in ("image", "video"):
        return True
    return part.type == "tool_response" and bool(part.media or (part.source and part.box is not None))


BoxFloats = Callable[[Box, str | None, int | None], list[str]]


def tool_call_text(part: Part, box_floats: BoxFloats, last_image: int | None) -> str:
    """``<tool_call>{"name": ..., "arguments": {"bbox_2d": [...]}}</tool_call>`` (base.py)."""
    if part.box is None:
        if not part.text:
            raise ValueError("tool_call part has neither a box nor raw text")
        return part.text
    coords = ", ".join(box_floats(part.box, part.media, last_image))
    name = json.dumps(part.tool or "crop")
    return f'<tool_call>{{"name": {name}, "arguments": {{"bbox_2d": [{coords}]}}}}</tool_call>'


def render(
    sample: Sample,
    box_floats: BoxFloats,
    *,
    for_generation: bool = False,
    enable_thinking: bool = False,
) -> list[Segment]:
    """Render a sample into segments.

    Args:
        sample: canonical sample.
        box_floats: (pixel box, the image path the call names or None, index of the latest
            image part shown before the call or None) -> the four normalised coordinate
            strings; a call's box is relative to the image it names, else the latest image.
        for_generation: keep the conversation before its final answer (``prompt_messages``)
            and end with the assistant header.
        enable_thinking: generation only; when False the empty think block is appended.
    """
    messages = prompt_messages(sample.messages) if for_generation else list(sample.messages)
    out: list[Segment] = []
    state = {"visuals": 0, "last_image": None}
    for msg in messages:
        _message(msg, out, state, box_floats, training=not for_generation)
    if for_generation:
        out.append(Segment("text", "<|im_start|>assistant\n"))
        if not enable_thinking:
            out.append(Segment("text", EMPTY_THINK))
    elif messages and messages[-1].role == "assistant" and out[-1].text.endswith("\n"):
        # The official formatter drops the final "\n" of a conversation (which ends with an
        # assistant turn); a fragment ending in a tool/user turn (a rollout's tool turn) keeps it.
        out[-1].text = out[-1].text[:-1]
        if not out[-1].text:
            out.pop()
    return out


def _items(parts: list[Part], out: list[Segment], state: dict) -> None:
    """User/system/tool items joined by "\\n"; visuals become visual segments."""
    for i, part in enumerate(parts):
        if i:
            out.append(Segment("text", "\n"))
        if is_visual(part):
            kind = "video" if part.type == "video" else "image"
            out.append(Segment(kind, visual=state["visuals"]))
            if part.type == "image":
                state["last_image"] = state["visuals"]
            state["visuals"] += 1
        elif part.type in ("text", "tool_response"):
            out.append(Segment("text", _strip_visual_tags(part.text or "")))
        else:
            raise ValueError(f"a {part.type!r} part cannot appear in a non-assistant message")


def _message(msg: Message, out: list[Segment], state: dict, box_floats: BoxFloats, training: bool) -> None:
    if msg.role in ("system", "user"):
        out.append(Segment("text", f"<|im_start|>{msg.role}\n"))
        _items(msg.content, out, state)
        out.append(Segment("text", "<|im_end|>\n"))
    elif msg.role == "tool":
        out.append(Segment("text", "<|im_start|>user\n<tool_response>\n"))
        _items(msg.content, out, state)
        out.append(Segment("text", "\n</tool_response><|im_end|>\n"))
    elif msg.role == "assistant":
        body = _assistant_body(msg, box_floats, state["last_image"])
        out.append(Segment("text", "<|im_start|>assistant\n"))
        if training:
            if not ("<think>" in body and THINK_END in body):
                out.append(Segment("text", EMPTY_THINK))
            out.append(Segment("text", body + "<|im_end|>", learn=True))
        else:
            if THINK_END in body:
                body = body.split(THINK_END)[-1].lstrip("\n")
            out.append(Segment("text", body + "<|im_end|>"))
        out.append(Segment("text", "\n"))
    else:
        raise ValueError(f"unknown role {msg.role!r}")


def _assistant_body(msg: Message, box_floats: BoxFloats, last_image: int | None) -> str:
    pieces: list[str] = []
    for part in msg.content:
        if part.type == "text":
            pieces.append(part.text or "")
        elif part.type == "tool_call":
            sep = "\n" if "".join(pieces) else ""
            pieces.append(sep + tool_call_text(part, box_floats, last_image))
        else:
            raise ValueError(f"assistant messages hold text and tool_call parts, got {part.type!r}")
    return "".join(pieces)
