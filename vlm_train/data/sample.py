"""The canonical sample every reader produces and every family consumes.

One shape for all formats so that readers, validation, the crop tool, rewards and the
families' input builders never know which file format a sample came from.

Coordinates: every ``Box`` is in pixels of the *original* image it refers to
(x1, y1, x2, y2, top-left origin). Family-specific text formats (0-1000,
[0,1), ...) are produced and parsed in ``vlm_train.data.coords`` and the families.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

PartType = Literal["text", "image", "video", "tool_call", "tool_response"]
Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in original-image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass
class Part:
    """One typed piece of a message.

    - text: ``text``
    - image / video: ``media`` is a path relative to an image root (or absolute inside one)
    - tool_call: ``tool`` (e.g. "crop"), ``box`` (pixels of ``media`` or the sample's first
      image), ``label`` (free text), ``text`` (the raw call text as written in the data)
    - tool_response: ``media`` (an image the tool returned, e.g. a crop) or ``text``
    """

    type: PartType
    text: str | None = None
    media: str | None = None
    tool: str | None = None
    box: Box | None = None
    label: str | None = None
    # For tool responses produced by the crop tool: the source image and box it came from,
    # so the crop can be re-made from the original at any time.
    source: str | None = None


@dataclass
class Message:
    role: Role
    content: list[Part]

    def text(self) -> str:
        return "".join(p.text or "" for p in self.content if p.type == "text")


@dataclass
class GroundingTarget:
    """A referring expression and the box it refers to, in original-image pixels."""

    phrase: str
    box: Box
    image_index: int = 0


@dataclass
class Sample:
    id: str
    messages: list[Message]
    # Original size of each image referenced by the sample, when known: [(w, h), ...]
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    targets: list[GroundingTarget] = field(default_factory=list)
    # Annotated regions (label, box) a tool call may be matched against (region reward).
    regions: list[GroundingTarget] = field(default_factory=list)
    # Free-form metadata: source file, line, answer text, number of shapes, ...
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- convenience -----------------------------------------------------------------
    def media(self, kind: str = "image") -> list[str]:
        """Paths of all media parts of ``kind`` in message order (tool responses included)."""
        out = []
        for m in self.messages:
            for p in m.content:
                if p.type == kind and p.media:
                    out.append(p.media)
                elif kind == "image" and p.type == "tool_response" and p.media:
                    out.append(p.media)
        return out

    def image_parts(self) -> list[Part]:
        """Every part that stands for an image, in message order: image parts and tool
        responses carrying an image (a file in ``media`` or a crop of ``source`` at ``box``).
        This is the order of the ``images`` an InputBuilder receives."""
        return [
            p
            for m in self.messages
            for p in m.content
            if p.type == "image" or (p.type == "tool_response" and (p.media or (p.source and p.box is not None)))
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Sample:
        def box(b):
            # Four finite numbers or a ValueError naming the bad value: a box of strings, NaN
            # or Infinity must not reach IoU, cropping or coordinate text.
            from vlm_train.data.coords import parse_numbers
            from vlm_train.data.errors import BAD_BOX, SampleProblem

            if b is None:
                return None
            if isinstance(b, dict):
                if set(b) != {"x1", "y1", "x2", "y2"}:
                    raise SampleProblem(BAD_BOX, f"a box needs keys x1, y1, x2, y2, got {sorted(b)}"[:200])
                b = [b["x1"], b["y1"], b["x2"], b["y2"]]
            if isinstance(b, (list, tuple)) and any(isinstance(v, (str, bool)) for v in b):
                raise SampleProblem(BAD_BOX, f"box coordinates must be JSON numbers, got {list(b)!r}"[:200])
            try:
                return Box(*parse_numbers(b))
            except ValueError as e:
                raise SampleProblem(BAD_BOX, str(e)[:200]) from None

        def target(t):
            return GroundingTarget(t["phrase"], box(t["box"]), t.get("image_index", 0))

        msgs = [
            Message(m["role"], [Part(**{**p, "box": box(p.get("box"))}) for p in m["content"]])
            for m in d["messages"]
        ]
        return Sample(
            id=str(d["id"]),
            messages=msgs,
            image_sizes=[tuple(s) for s in d.get("image_sizes", [])],
            targets=[target(t) for t in d.get("targets", [])],
            regions=[target(t) for t in d.get("regions", [])],
            meta=dict(d.get("meta", {})),
        )

    @staticmethod
    def from_json(s: str) -> Sample:
        return Sample.from_dict(json.loads(s))


def text(s: str) -> Part:
    return Part("text", text=s)


def image(path: str) -> Part:
    return Part("image", media=path)


def prompt_messages(messages: list[Message]) -> list[Message]:
    """The prompt part of a conversation: everything before the final answer.

    The final answer is the run of assistant (and tool) messages after the last user message;
    a conversation that ends with a user message is a prompt already.
    """
    last_user = max((i for i, m in enumerate(messages) if m.role in ("user", "system")), default=-1)
    return messages[: last_user + 1]
