"""Tool calls written inside assistant text, turned into real calls of the crop tool.

This is the one tool-call lexer of the project: data readers (``split_tool_calls``) and the
reward parser (vlm_train/rewards/parse.py) both find calls with ``tag_spans``,
``CROP_BRACE`` and ``plain_call``. Every scan is linear in the text length (``str.find`` for
tags, regexes without adjacent unbounded quantifiers, a bounded label), so a long run of
blanks after an opener costs microseconds, not seconds.

SFT data writes a crop call in one of three syntaxes (docs/models.md, "Seed data formats"):

- ``{Crop label [x1, y1, x2, y2]}`` (the seed's reasoning traces, absolute pixels);
- ``<tool_call>[x1, y1, x2, y2]</tool_call>`` or ``<tool_call>Crop label [..]</tool_call>``
  (the seed's rewritten form, absolute pixels);
- JSON ``{"name": "crop", "arguments": {"bbox_2d": [...]}}``, bare or inside
  ``<tool_call>..</tool_call>`` (the form families render; its coordinates follow
  ``json_coords``).

``split_tool_calls`` cuts one assistant text at every call: the text before the call and a
``tool_call`` part end one assistant message, a ``tool`` message carries the crop (made
from the original image at render time: ``source`` + ``box``), and the assistant continues
in a new message. The crop is input, never a learning target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from vlm_train.data import coords
from vlm_train.data.errors import BAD_BOX, SampleProblem
from vlm_train.data.sample import Box, Message, Part

CoordSystem = Literal["pixels", "1000", "unit"]

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
# ``{Crop label [..]}``. The label is bounded (200 characters) and not followed by ``\s*``, so a
# failed match costs at most ~200 steps per ``{``; the label is stripped afterwards.
CROP_BRACE = re.compile(r"\{\s*Crop\b(?P<label>[^\[\]{}]{0,200})\[(?P<nums>[^\[\]]*)\]\s*\}")
_OPENER = re.compile(r"\{\s*Crop\b|<tool_call>")
# A bare JSON call outside <tool_call>: an object naming the crop tool.
_JSON_START = re.compile(r'\{\s*"name"\s*:\s*"crop"', re.I)


def tag_spans(text: str, open_tag: str, close_tag: str) -> list[tuple[int, int, int, int]]:
    """(start, inner_start, inner_end, end) of each closed ``open…close`` pair, left to right.

    An unclosed opener ends the scan: no later pair can close either, and scanning on would
    make the cost quadratic in the number of openers.
    """
    out = []
    pos = 0
    while True:
        s = text.find(open_tag, pos)
        if s < 0:
            return out
        e = text.find(close_tag, s + len(open_tag))
        if e < 0:
            return out
        out.append((s, s + len(open_tag), e, e + len(close_tag)))
        pos = e + len(close_tag)


def plain_call(body: str) -> tuple[bool, str, str] | None:
    """A non-JSON call body: ``[..]``, ``Crop label [..]`` or ``{Crop label [..]}``.

    Returns (names_crop, label, numbers text inside the brackets), or None for another body.
    Parsed by hand: a regex with a free-text label before ``\s*\[`` backtracks quadratically
    on long blank runs.
    """
    b = body.strip()
    braced = b.startswith("{") and b.endswith("}")
    if braced:
        b = b[1:-1].strip()
    names_crop = b.startswith("Crop") and (len(b) == 4 or not (b[4].isalnum() or b[4] == "_"))
    if braced and not names_crop:
        return None
    lb, rb = b.find("["), len(b) - 1
    if lb < 0 or not b.endswith("]"):
        return None
    nums = b[lb + 1 : rb]
    label = b[4:lb] if names_crop else b[:lb]
    if "[" in nums or "]" in nums or any(c in label for c in "[]{}") or (not names_crop and label.strip()):
        return None
    return names_crop, label.strip(), nums


@dataclass
class ParsedCall:
    start: int
    end: int
    syntax: Literal["crop_brace", "tool_call", "json"]
    label: str
    values: list[float]
    coords: CoordSystem
    raw: str


def _numbers(text: str, raw: str) -> list[float]:
    items = [t.strip() for t in text.split(",")]
    try:
        return coords.parse_numbers(items)
    except ValueError as e:
        raise SampleProblem(BAD_BOX, f"tool call {raw!r}: {e}") from None


# A tool call holds a flat object with one list; anything nested deeper is malformed. Refusing
# it before ``json.loads`` matters: the C decoder recurses once per bracket, and 50,000 of them
# reach the interpreter's recursion limit, where any finalizer that the garbage collector happens
# to run at that depth fails too (an "unraisable" error that kills pytest runs and pollutes logs).
MAX_JSON_DEPTH = 16


def shallow_json(body: str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """``json.loads`` for tool-call bodies; raises ``json.JSONDecodeError`` when nested deeper than ``max_depth``."""
    if body.count("[") + body.count("{") > max_depth:
        depth, in_str, escaped = 0, False, False
        for i, ch in enumerate(body):
            if in_str:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch in "[{":
                depth += 1
                if depth > max_depth:
                    raise json.JSONDecodeError(f"nested deeper than {max_depth}", body, i)
            elif ch in "]}":
                depth -= 1
    return json.loads(body)


def _json_call(body: str, raw: str) -> tuple[str, list[float]] | None:
    try:
        obj = shallow_json(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or str(obj.get("name", "")).lower() != "crop":
        return None
    args = obj.get("arguments") or {}
    if isinstance(args, str):  # some datasets double-encode the arguments
        try:
            args = shallow_json(args)
        except json.JSONDecodeError:
            raise SampleProblem(BAD_BOX, f"tool call {raw!r}: arguments are not JSON") from None
    bbox = args.get("bbox_2d", args.get("bbox")) if isinstance(args, dict) else None
    if bbox is None:
        raise SampleProblem(BAD_BOX, f"tool call {raw!r}: no bbox_2d argument")
    try:
        values = coords.parse_numbers(bbox)
    except ValueError as e:
        raise SampleProblem(BAD_BOX, f"tool call {raw!r}: {e}") from None
    return str(args.get("label", "")), values


def _bare_json_end(text: str, start: int) -> int | None:
    """End of the balanced JSON object starting at ``start`` (None when unbalanced)."""
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def find_tool_calls(text: str, json_coords: CoordSystem = "pixels") -> list[ParsedCall]:
    """Every crop call in ``text``, in order. Raises SampleProblem for a malformed call."""
    calls: list[ParsedCall] = []
    for m in CROP_BRACE.finditer(text):
        calls.append(
            ParsedCall(m.start(), m.end(), "crop_brace", m["label"].strip(), _numbers(m["nums"], m[0]), "pixels", m[0])
        )
    for start, i0, i1, end in tag_spans(text, CALL_OPEN, CALL_CLOSE):
        raw, body = text[start:end], text[i0:i1].strip()
        plain = plain_call(body)
        if plain:
            calls.append(ParsedCall(start, end, "tool_call", plain[1], _numbers(plain[2], raw), "pixels", raw))
            continue
        parsed = _json_call(body, raw)
        if parsed is None:
            raise SampleProblem(BAD_BOX, f"cannot parse tool call {raw!r}")
        calls.append(ParsedCall(start, end, "json", parsed[0], parsed[1], json_coords, raw))
    taken = [(c.start, c.end) for c in calls]
    for m in _JSON_START.finditer(text):
        if any(s <= m.start() < e for s, e in taken):
            continue
        end = _bare_json_end(text, m.start())
        if end is None:
            raise SampleProblem(BAD_BOX, f"unterminated JSON tool call at character {m.start()}")
        raw = text[m.start() : end]
        parsed = _json_call(raw, raw)
        if parsed is not None:
            calls.append(ParsedCall(m.start(), end, "json", parsed[0], parsed[1], json_coords, raw))
    calls.sort(key=lambda c: (c.start, -c.end))
    # A call written inside another (e.g. ``<tool_call>{Crop ..}</tool_call>``) is one call.
    out: list[ParsedCall] = []
    for c in calls:
        if out and c.start < out[-1].end:
            continue
        out.append(c)
    # A call opener no parsed call covers is a broken call: silently training on it as text
    # would teach the model a call syntax that never runs.
    for m in _OPENER.finditer(text):
        if not any(c.start <= m.start() < c.end for c in out):
            snippet = text[m.start() : m.start() + 60]
            raise SampleProblem(BAD_BOX, f"malformed tool call at character {m.start()}: {snippet!r}")
    return out


def call_box(call: ParsedCall, size: tuple[int, int] | None) -> Box:
    """The call's box in original-image pixels."""
    if call.coords == "pixels":
        return Box(*call.values)
    if size is None:
        raise SampleProblem(
            BAD_BOX, f"tool call {call.raw!r} uses {call.coords} coordinates but the image size is unknown"
        )
    w, h = size
    return coords.convention(call.coords).to_box(call.values, w, h)


def split_tool_calls(
    text: str,
    source_image: str | None,
    size: tuple[int, int] | None = None,
    json_coords: CoordSystem = "pixels",
    crop_response: Callable[[str | None, Box], Part] | None = None,
) -> list[Message]:
    """One assistant text -> alternating assistant / tool messages (see module docstring).

    Args:
        text: assistant text, possibly with crop calls.
        source_image: path of the image the calls crop (the sample's first image).
        size: (width, height) of that image; needed only for non-pixel JSON calls.
        json_coords: coordinate system of JSON calls.
        crop_response: builds the tool response part; default: a crop re-made from
            ``source_image`` at the box.

    Returns:
        Messages; a text without calls gives one assistant message.
    """
    calls = find_tool_calls(text, json_coords)
    if not calls:
        return [Message("assistant", [Part("text", text=text)])]
    if source_image is None:
        raise SampleProblem(BAD_BOX, "a crop tool call needs an image, but the sample has none")
    make = crop_response or (lambda src, box: Part("tool_response", source=src, box=box))  # tools.crop.crop_response
    out: list[Message] = []
    pos = 0
    for c in calls:
        box = call_box(c, size)
        before = text[pos : c.start]
        content = [Part("text", text=before)] if before else []
        content.append(Part("tool_call", tool="crop", box=box, label=c.label or None, text=c.raw))
        out.append(Message("assistant", content))
        out.append(Message("tool", [make(source_image, box)]))
        pos = c.end
    out.append(Message("assistant", [Part("text", text=text[pos:])]))
    return out


def format_crop_brace(label: str, box: Box) -> str:
    """The seed's ``{Crop label [x1, y1, x2, y2]}`` text (pixels, 2 decimals)."""
    vals = ", ".join(f"{v:.2f}" for v in box.as_list())
    return f"{{Crop {label} [{vals}]}}" if label else f"{{Crop [{vals}]}}"


def join_tool_calls(messages: list[Message]) -> str:
    """Inverse of ``split_tool_calls``: assistant/tool messages -> one text with ``{Crop ..}`` calls.

    Calls keep their raw text when they have one (so a file round-trips byte for byte);
    otherwise the seed's brace syntax is written.
    """
    chunks: list[str] = []
    for m in messages:
        if m.role != "assistant":
            continue
        for p in m.content:
            if p.type == "text":
                chunks.append(p.text or "")
            elif p.type == "tool_call":
                chunks.append(p.text or format_crop_brace(p.label or "", p.box or Box(0, 0, 0, 0)))
    return "".join(chunks)
