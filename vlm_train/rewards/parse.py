"""Boxes and crop-tool calls in model text -> canonical boxes in original-image pixels.

Forms understood (``coords`` names the convention, of vlm_train/data/coords.py, where the
syntax does not):

Answer boxes
  - every registered family's own syntax (``Family.find_boxes``), read in that family's
    convention: e.g. ``<ref>a cat</ref><box>[[x1,y1,x2,y2]]</box>`` (quad_box, 0-1000) or
    ``<box>(x1,y1),(x2,y2)</box>`` (pair_box, [0,1)); a 2-value result is kept as a point.
  - JSON       ``{"bbox_2d": [x1,y1,x2,y2], ...}`` in the ``coords`` convention.
  - bare list  ``[x1,y1,x2,y2]`` in the ``coords`` convention, only when no form above occurs
    (VLM-R1 style ``<answer>[..]</answer>``).

Tool calls (crop)
  - ``<tool_call>{"name": "crop", "arguments": {"bbox_2d": [..]}}</tool_call>``, ``coords`` convention.
  - ``<tool_call>[x1,y1,x2,y2]</tool_call>`` and ``<tool_call>Crop label [..]</tool_call>``, pixels.
  - ``{Crop label [x1,y1,x2,y2]}`` anywhere in the text (the seed data's form), pixels.
  - TRL's parsed ``tool_calls`` of a message (see ``parse_message_tool_call``), ``coords`` convention.

Answer boxes come from the answer part of the text only: after the last ``</think>`` (nothing
when a ``<think>`` is never closed), inside the first ``<answer>…</answer>`` when there is one,
and never from inside a tool call.

Every function here is total: any string gives a result, never an exception. All scanning is
linear in the text length (``str.find`` for tags, regexes without nested or adjacent unbounded
quantifiers) so a 100k-character completion costs milliseconds.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

from vlm_train.data.coords import FOUR_LIST, NUMBER, convention
from vlm_train.data.sample import Box
from vlm_train.data.toolcalls import CALL_CLOSE, CALL_OPEN, CROP_BRACE, plain_call, shallow_json, tag_spans

NUM = NUMBER
_FOUR = re.compile(FOUR_LIST)
_JSON_BBOX = re.compile(rf"[\"']bbox_2d[\"']\s*:\s*\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
CROP_TOOL = "crop"


@dataclass(frozen=True)
class ParsedBox:
    """One box (or point) read from text.

    Attributes:
        box: Original-image pixels, corners ordered, clipped to the image. A point is (x, y, x, y).
        raw: The numbers as written.
        convention: "1000", "unit" or "pixels" (vlm_train/data/coords.py).
        form: Which syntax it came from (quad_box, pair_box, pair_point, json, bare,
            tool_json, tool_list, tool_crop, crop_brace, message).
        swapped: The corners were written in the wrong order (x1 > x2 or y1 > y2) and were fixed.
        clipped: Some raw value lay outside the image in its convention and was clipped.
        is_point: A ``<point>``, not a box.
        label: The ``<ref>`` phrase or crop label, when given.
    """

    box: Box
    raw: tuple[float, ...]
    convention: str
    form: str
    swapped: bool = False
    clipped: bool = False
    is_point: bool = False
    label: str | None = None

    @property
    def valid(self) -> bool:
        """Written correctly: ordered corners, inside the image, non-zero area."""
        return not self.swapped and not self.clipped and not self.is_point and self.box.area > 0


@dataclass(frozen=True)
class ToolCall:
    """One crop-tool call. ``error`` is None when the call is well formed.

    ``box`` is None when the call is malformed, or when no valid image size was given to
    convert it with (the call can still be well formed).
    """

    form: str
    text: str
    name: str | None = None
    box: ParsedBox | None = None
    error: str | None = None

    @property
    def well_formed(self) -> bool:
        return self.error is None


@dataclass
class Parsed:
    """Everything read from one completion."""

    answer_boxes: list[ParsedBox] = field(default_factory=list)
    answer_points: list[ParsedBox] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    answer_text: str = ""

    @property
    def tool_boxes(self) -> list[ParsedBox]:
        return [c.box for c in self.tool_calls if c.box is not None]


# ---- numbers -> canonical boxes --------------------------------------------------------------


def _floats(groups: tuple[str, ...] | list[str]) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(g) for g in groups)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON int beyond float range
        return None
    return vals if all(math.isfinite(v) for v in vals) else None


def make_box(
    raw: tuple[float, ...],
    convention_name: str,
    size: tuple[float, float] | None,
    form: str,
    label: str | None = None,
) -> ParsedBox | None:
    """Raw (x1, y1, x2, y2) or (x, y) in ``convention_name`` -> a ParsedBox, or None when it cannot be."""
    if size is None or len(raw) not in (2, 4) or not all(math.isfinite(v) for v in raw):
        return None
    w, h = size
    is_point = len(raw) == 2
    conv = convention(convention_name)
    x1, y1, x2, y2 = conv.to_pixels(raw * 2 if is_point else raw, w, h)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    swapped = x1 > x2 or y1 > y2
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    clipped = not conv.in_range(raw, w, h)
    box = Box(min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
    return ParsedBox(box, tuple(raw), conv.name, form, swapped, clipped, is_point, label)


# ---- tags -------------------------------------------------------------------------------------


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Blank out ``spans`` with spaces, keeping offsets."""
    if not spans:
        return text
    parts, pos = [], 0
    for s, e in sorted(spans):
        if s < pos:
            s = pos
        if e <= s:
            continue
        parts.append(text[pos:s])
        parts.append(" " * (e - s))
        pos = e
    parts.append(text[pos:])
    return "".join(parts)


def _ref_label(text: str, box_start: int) -> str | None:
    """The ``<ref>…</ref>`` phrase right before a ``<box>``, if any."""
    head = text[max(0, box_start - 512) : box_start].rstrip()
    if not head.endswith("</ref>"):
        return None
    s = head.rfind("<ref>")
    return head[s + 5 : -6].strip() if s >= 0 else None


# ---- tool calls -------------------------------------------------------------------------------


def _json_crop_call(obj: object, coords: str, size, form: str, text: str) -> ToolCall:
    """Validate a decoded ``{"name": "crop", "arguments": {"bbox_2d": [...]}}``."""
    if not isinstance(obj, dict):
        return ToolCall(form, text, error="tool call is not a JSON object")
    name = obj.get("name")
    if not isinstance(name, str):
        return ToolCall(form, text, error="tool call has no string 'name'")
    if name != CROP_TOOL:
        return ToolCall(form, text, name=name, error=f"unknown tool {name!r}")
    args = obj.get("arguments")
    if isinstance(args, str):  # OpenAI-style arguments are a JSON string
        try:
            args = shallow_json(args)
        except Exception:
            return ToolCall(form, text, name=name, error="arguments are not valid JSON")
    if not isinstance(args, dict):
        return ToolCall(form, text, name=name, error="'arguments' is not an object")
    b = args.get("bbox_2d")
    if not isinstance(b, list) or len(b) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in b):
        return ToolCall(form, text, name=name, error="'bbox_2d' is not a list of 4 numbers")
    raw = _floats(b)
    if raw is None:
        return ToolCall(form, text, name=name, error="'bbox_2d' has a non-finite value")
    label = args.get("label") if isinstance(args.get("label"), str) else None
    return ToolCall(form, text, name=name, box=make_box(raw, coords, size, form, label))


def _tool_call_inner(inner: str, coords: str, size) -> ToolCall:
    body = inner.strip()
    plain = plain_call(body)
    m = _FOUR.fullmatch(f"[{plain[2]}]") if plain else None
    if plain and m:
        raw = _floats(m.groups())
        names_crop, label = plain[0], plain[1] or None
        form = "tool_crop" if names_crop else "tool_list"
        if raw is None:
            return ToolCall(form, inner, error="non-finite coordinate")
        return ToolCall(form, inner, name=CROP_TOOL, box=make_box(raw, "pixels", size, form, label))
    if body.startswith("{"):
        try:
            obj = shallow_json(body)
        except Exception:  # JSONDecodeError (incl. too deep), int-digit limit: all malformed
            return ToolCall("tool_json", inner, error="malformed JSON")
        return _json_crop_call(obj, coords, size, "tool_json", inner)
    return ToolCall("tool_text", inner, error="unrecognised tool call")


def _tool_calls(text: str, coords: str, size) -> tuple[list[tuple[int, ToolCall]], list[tuple[int, int]]]:
    """Tool calls in ``text`` with their offsets, and the spans they cover (for masking)."""
    calls: list[tuple[int, ToolCall]] = []
    spans: list[tuple[int, int]] = []
    pairs = tag_spans(text, CALL_OPEN, CALL_CLOSE)
    for s, i0, i1, e in pairs:
        calls.append((s, _tool_call_inner(text[i0:i1], coords, size)))
        spans.append((s, e))
    tail_from = pairs[-1][3] if pairs else 0
    dangling = text.find(CALL_OPEN, tail_from)
    if dangling >= 0:
        calls.append((dangling, ToolCall("tool_text", text[dangling:], error="unclosed <tool_call>")))
        spans.append((dangling, len(text)))
    masked = _mask(text, spans)
    matched = set()
    for m in CROP_BRACE.finditer(masked):
        four = _FOUR.fullmatch(f"[{m['nums']}]")
        if four is None:
            continue  # reported as malformed below
        matched.add(m.start())
        raw = _floats(four.groups())
        label = m["label"].strip() or None
        if raw is None:
            calls.append((m.start(), ToolCall("crop_brace", m.group(0), error="non-finite coordinate")))
        else:
            box = make_box(raw, "pixels", size, "crop_brace", label)
            calls.append((m.start(), ToolCall("crop_brace", m.group(0), name=CROP_TOOL, box=box)))
        spans.append((m.start(), m.end()))
    pos = masked.find("{Crop")
    while pos >= 0:
        nxt = masked[pos + 5 : pos + 6]
        if pos not in matched and not (nxt.isalnum() or nxt == "_"):
            calls.append((pos, ToolCall("crop_brace", masked[pos : pos + 200], error="malformed {Crop ...}")))
        pos = masked.find("{Crop", pos + 5)
    calls.sort(key=lambda c: c[0])
    return calls, spans


def parse_message_tool_call(call: object, coords: str, size) -> ToolCall:
    """A TRL/OpenAI structured call ``{"type": "function", "function": {"name", "arguments"}}``."""
    text = _safe_repr(call)
    if not isinstance(call, dict):
        return ToolCall("message", text, error="tool call is not an object")
    fn = call.get("function", call)
    return _json_crop_call(fn, coords, size, "message", text)


def _safe_repr(obj: object) -> str:
    try:
        return repr(obj)[:2000]
    except Exception:
        return "<unprintable>"


@functools.cache
def _families() -> tuple:
    """Every registered family: an answer box in any family's syntax is read (in that
    family's convention), whatever the row's ``coords`` says."""
    from vlm_train.models import FAMILIES, get_family

    return tuple(get_family(n) for n in FAMILIES)


# ---- answer -----------------------------------------------------------------------------------


def answer_span(text: str, floor: int = 0) -> tuple[int, int]:
    """(start, end) of the answer part of ``text``, not before ``floor``.

    After the last ``</think>`` (empty when a ``<think>`` is never closed), narrowed to the first
    ``<answer>…</answer>`` when one is there.
    """
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        start = close + len(THINK_CLOSE)
    elif THINK_OPEN in text:
        return len(text), len(text)
    else:
        start = 0
    start = max(start, floor)
    s = text.find(ANSWER_OPEN, start)
    if s >= 0:
        e = text.find(ANSWER_CLOSE, s + len(ANSWER_OPEN))
        if e >= 0:
            return s + len(ANSWER_OPEN), e
    return start, len(text)


def _answer_boxes(text: str, lo: int, hi: int, coords: str, size) -> tuple[list[ParsedBox], list[ParsedBox]]:
    region = text[lo:hi]
    found: list[tuple[int, ParsedBox]] = []
    points: list[tuple[int, ParsedBox]] = []

    def add(pos: int, raw, conv: str, form: str, label=None, into=found):
        vals = _floats(raw)
        pb = make_box(vals, conv, size, form, label) if vals is not None else None
        if pb is not None:
            into.append((pos, pb))

    for fam in _families():
        for fb in fam.find_boxes(region):
            into = points if len(fb.values) == 2 else found
            add(fb.start, fb.values, fam.coords.name, fb.form, _ref_label(region, fb.tag_start), into)
    for m in _JSON_BBOX.finditer(region):
        add(m.start(), m.groups(), coords, "json")
    if not found:
        for m in _FOUR.finditer(region):
            add(m.start(), m.groups(), coords, "bare")
    found.sort(key=lambda f: f[0])
    return [b for _, b in found], [p for _, p in points]


# ---- public ------------------------------------------------------------------------------------


def parse_completion(text: str, image_size: tuple[float, float] | None, coords: str = "pixels") -> Parsed:
    """Read answer boxes, points and tool calls from one assistant text.

    Args:
        text: The completion text (any string; a non-string reads as empty).
        image_size: (width, height) of the original image; None gives no boxes (tool calls are
            still checked for form).
        coords: Convention of JSON ``bbox_2d`` and bare lists: "1000", "unit" or "pixels".

    Returns:
        A ``Parsed`` with boxes in original-image pixels.
    """
    return parse_rollout([text], image_size, coords)


def parse_rollout(
    texts: list[str],
    image_size: tuple[float, float] | None,
    coords: str = "pixels",
    structured_calls: list[object] | tuple[object, ...] = (),
) -> Parsed:
    """Read a multi-turn rollout: the assistant texts in order, and TRL's parsed tool calls.

    Tool calls come from every text (each scanned on its own, so a tag never pairs across
    turns) and from ``structured_calls``; the answer comes from the last text only, though a
    ``</think>`` in an earlier turn still counts (thinking may span a tool call).
    """
    texts = [t if isinstance(t, str) else "" for t in texts] or [""]
    joined_parts, spans, calls = [], [], []
    offset = 0
    for t in texts:
        c, sp = _tool_calls(t, coords, image_size)
        calls.extend(call for _, call in c)
        spans.extend((s + offset, e + offset) for s, e in sp)
        joined_parts.append(t)
        offset += len(t) + 1
    for sc in structured_calls:
        calls.append(parse_message_tool_call(sc, coords, image_size))
    joined = "\n".join(joined_parts)
    masked = _mask(joined, spans)
    last_start = len(joined) - len(texts[-1])
    lo, hi = answer_span(masked, floor=last_start)
    boxes, points = _answer_boxes(masked, lo, hi, coords, image_size)
    return Parsed(boxes, points, calls, masked[lo:hi].strip())


def refcoco_protocol_box(text: str, width: float, height: float) -> Box:
    """The box the official RefCOCO evaluation script reads from a response (docs/models.md,
    "RefCOCO protocol").

    Equivalent to the first match of ``\\[*\\[(.*?),(.*?),(.*?),(.*?)\\]\\]*`` (no DOTALL) read as
    floats, (0, 0, 0, 0) when there is none or it does not read; divided by 1000 when the four
    sum to >= 4; then x scaled by ``width`` and y by ``height``. Not clipped or reordered, as in
    the script. Implemented by hand: that regex backtracks in O(n^4) on long lines without "]".

    Lazy groups make the regex's first match, on the first line holding a "[", exactly: the text
    after that "[" run split at its first three commas, up to the first "]" after the third
    comma. A later "[" on the same line sees a suffix of the same text, so cannot match where
    the first did not.
    """
    vals = (0.0, 0.0, 0.0, 0.0)
    for line in text.split("\n") if isinstance(text, str) else []:
        b = line.find("[")
        if b < 0:
            continue
        while b < len(line) and line[b] == "[":
            b += 1
        c1 = line.find(",", b)
        c2 = line.find(",", c1 + 1) if c1 >= 0 else -1
        c3 = line.find(",", c2 + 1) if c2 >= 0 else -1
        r = line.find("]", c3 + 1) if c3 >= 0 else -1
        if r < 0:
            continue
        try:
            got = tuple(float(g) for g in (line[b:c1], line[c1 + 1 : c2], line[c2 + 1 : c3], line[c3 + 1 : r]))
        except ValueError:
            got = None
        if got is not None:
            vals = got
        break
    if sum(vals) >= 4:
        vals = tuple(v / 1000 for v in vals)
    x1, y1, x2, y2 = vals
    return Box(x1 * width, y1 * height, x2 * width, y2 * height)
