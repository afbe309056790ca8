"""Synthetic grounding data: coloured shapes, referring expressions, boxes, crop-tool QnA.

Deterministic by seed: sample ``i`` of seed ``s`` depends only on (s, i), so the first k
samples of a larger set equal a set of k samples, and two seeds give two different sets.

Each image holds 1..``max_shapes`` non-overlapping shapes. With several shapes the
expression is built so that every attribute or relation word in it is needed (see the
CPU-learning notes in docs/models.md, "Tiny models on CPU": a model that only learns "box a shape" must fail):

- ``colour``: another shape of the same kind in another colour (and, with 3+ shapes, a
  shape of the same colour and another kind): "the red circle";
- ``size``: the same kind and colour in the other size (and a same-kind, same-size shape of
  another colour): "the small red circle";
- ``relation``: two shapes of the same kind and colour, one on each side of an anchor
  shape: "the blue square left of the green triangle";
- ``pattern`` (only when asked for, ``modes``): small twins of one kind and colour in one
  quadrant of the image, one striped and one plain: "the striped red circle". The stripes are
  finer than a 4x-downscaled view resolves and keep the fill's mean colour, so on a canvas four
  times the model's input side only a crop of the quadrant (shown at 2x) tells the twins apart
  (docs/models.md, "A task where the crop pays").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw

from vlm_train.data import coords
from vlm_train.data.sample import Box, GroundingTarget, Message, Part, Sample
from vlm_train.data.toolcalls import format_crop_brace, split_tool_calls

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 30),
}
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
# Side length as a fraction of the image side; the gap between the classes keeps
# "small" and "large" unambiguous to the eye.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.14, 0.20), "large": (0.28, 0.36)}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
GAP = 2  # pixels between shapes, so boxes never touch
# Fillers need a kind+colour pair of their own (24 pairs, 3 taken by the named shapes).
MAX_SHAPES = 12
MODES: tuple[str, ...] = ("colour", "size", "relation", "pattern")
"""Modes of multi-shape scenes; by default the first three (``pattern`` only when asked for)."""
MIN_SHAPES_OF_MODE = {"colour": 2, "size": 2, "relation": 3, "pattern": 2}
PATTERNS: tuple[str, ...] = ("plain", "striped")
# Horizontal stripes, this many canvas pixels per light+dark pair, each row the fill colour
# plus or minus STRIPE_AMPLITUDE (per channel, clipped symmetrically so the mean stays the
# fill's): on a 256 px canvas seen as a 64 px view they average away; in a crop of a quadrant,
# seen at 2x, they show (tests/data/test_synthetic.py measures both).
STRIPE_PERIOD = 6
STRIPE_AMPLITUDE = 60

Kind = Literal["grounding", "toolqa", "mixed", "grounding_crop", "grounding_mixed"]
KINDS_OF_SAMPLE: tuple[str, ...] = ("grounding", "toolqa", "mixed", "grounding_crop", "grounding_mixed")
# A grounding crop call asks for the target's box grown by this fraction of its side on every
# edge (clipped to the image): the crop holds the named shape with some context, and the answer
# box still has to be read off, not copied from the call.
CROP_MARGIN = 0.5


@dataclass
class Shape:
    kind: str
    colour: str
    size: str
    box: Box | None = None
    pattern: str = "plain"

    def name(self, with_size: bool = False, with_pattern: bool = False) -> str:
        words = ([self.size] if with_size else []) + ([self.pattern] if with_pattern else []) + [self.colour, self.kind]
        return " ".join(words)


@dataclass
class Scene:
    shapes: list[Shape]
    target: int
    mode: str
    phrase: str
    relation: str = ""
    anchor: int | None = None
    """Relation mode: the relation word of the phrase and the anchor shape's index."""
    zone: Box | None = None
    """Pattern mode: the quadrant of the image that holds both twins."""


# ---- scene construction --------------------------------------------------------------


def _other(rng: random.Random, options: tuple[str, ...] | list[str], *exclude: str) -> str:
    return rng.choice([o for o in options if o not in exclude])


def _attributes(rng: random.Random, n: int, mode: str) -> tuple[list[Shape], str]:
    """Shapes (target first) and the relation word for ``mode``; no positions yet."""
    colours, sizes = tuple(COLOURS), tuple(SIZE_RANGES)
    t = Shape(rng.choice(KINDS), rng.choice(colours), rng.choice(sizes))
    shapes = [t]
    relation = ""
    if mode == "colour":
        shapes.append(Shape(t.kind, _other(rng, colours, t.colour), rng.choice(sizes)))
        if n >= 3:
            shapes.append(Shape(_other(rng, KINDS, t.kind), t.colour, rng.choice(sizes)))
    elif mode == "size":
        shapes.append(Shape(t.kind, t.colour, _other(rng, sizes, t.size)))
        if n >= 3:
            shapes.append(Shape(t.kind, _other(rng, colours, t.colour), t.size))
    elif mode == "relation":
        relation = rng.choice(RELATIONS)
        # Small shapes so that three fit in a row of a small image.
        t.size = "small"
        shapes.append(Shape(t.kind, t.colour, "small"))
        ak = rng.choice(KINDS)
        ac = _other(rng, colours, t.colour) if ak == t.kind else rng.choice(colours)
        shapes.append(Shape(ak, ac, "small"))
    elif mode == "pattern":
        # Small, so that both fit in one quadrant (the crop that shows them at twice the view).
        t.size, t.pattern = "small", rng.choice(PATTERNS)
        shapes.append(Shape(t.kind, t.colour, t.size, pattern=_other(rng, PATTERNS, t.pattern)))
    taken = {(s.kind, s.colour) for s in shapes}
    while len(shapes) < n:
        # Fillers never share kind+colour with a named shape, so they never compete.
        k, c = rng.choice(KINDS), rng.choice(colours)
        if (k, c) not in taken:
            shapes.append(Shape(k, c, rng.choice(sizes)))
            taken.add((k, c))
    return shapes, relation


def _place(rng: random.Random, shapes: list[Shape], image_size: int, tries: int = 60,
           zone: tuple[Box, int] | None = None) -> bool:
    """Place ``shapes`` without overlap; with ``zone`` (box, k) the first k inside that box."""
    placed: list[Box] = []
    for i, s in enumerate(shapes):
        lo, hi = SIZE_RANGES[s.size]
        side = max(4, round(rng.uniform(lo, hi) * image_size))
        x0, y0, x1, y1 = 0, 0, image_size, image_size
        if zone is not None and i < zone[1]:
            x0, y0, x1, y1 = int(zone[0].x1), int(zone[0].y1), int(zone[0].x2), int(zone[0].y2)
        for _ in range(tries):
            x = rng.randint(x0 + 1, x1 - side - 1)
            y = rng.randint(y0 + 1, y1 - side - 1)
            b = Box(float(x), float(y), float(x + side), float(y + side))
            if all(
                b.x2 + GAP <= o.x1 or o.x2 + GAP <= b.x1 or b.y2 + GAP <= o.y1 or o.y2 + GAP <= b.y1 for o in placed
            ):
                s.box = b
                placed.append(b)
                break
        else:
            return False
    return True


def _holds(relation: str, a: Box, anchor: Box) -> bool:
    """``a`` lies entirely on the ``relation`` side of ``anchor``."""
    return {
        "left of": a.x2 <= anchor.x1,
        "right of": a.x1 >= anchor.x2,
        "above": a.y2 <= anchor.y1,
        "below": a.y1 >= anchor.y2,
    }[relation]


_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _try_scene(rng: random.Random, image_size: int, n: int, mode: str, attempts: int) -> Scene | None:
    for _attempt in range(attempts):
        shapes, relation = _attributes(rng, n, mode)
        zone = None
        if mode == "pattern":  # the twins share a quadrant, so one crop shows both up close
            h = image_size // 2
            qx, qy = rng.randrange(2), rng.randrange(2)
            zone = Box(float(qx * h), float(qy * h), float(qx * h + h), float(qy * h + h))
        if not _place(rng, shapes, image_size, zone=(zone, 2) if zone else None):
            continue
        t = shapes[0]
        if mode == "relation":
            d, anchor = shapes[1], shapes[2]
            assert t.box and d.box and anchor.box
            # The distractor must sit clearly on the other side, or the phrase is ambiguous.
            if not (_holds(relation, t.box, anchor.box) and _holds(_OPPOSITE[relation], d.box, anchor.box)):
                continue
            phrase = f"the {t.name()} {relation} the {anchor.name()}"
        else:
            phrase = f"the {t.name(with_size=(mode == 'size'), with_pattern=(mode == 'pattern'))}"
        # Shuffle so the target's index carries no information; keep track of it.
        order = list(range(len(shapes)))
        rng.shuffle(order)
        anchor = order.index(2) if mode == "relation" else None
        return Scene([shapes[i] for i in order], order.index(0), mode, phrase, relation, anchor, zone)
    return None


def make_scene(rng: random.Random, image_size: int, max_shapes: int, modes: tuple[str, ...] | None = None,
               min_shapes: int = 1) -> Scene:
    """One scene whose phrase singles out the target and needs its attribute/relation words.

    ``modes``: the modes a scene of several shapes draws from (default colour, size and, with
    3+ shapes, relation); those needing more shapes than the scene has are left out, and a
    scene that none fits is a colour scene. ``min_shapes``: the fewest shapes per scene.
    """
    n = rng.randint(min_shapes, max_shapes)
    if n == 1:
        fits = ["single"]
    else:
        fits = [m for m in modes or MODES[:3] if MIN_SHAPES_OF_MODE[m] <= n] or ["colour"]
    mode = rng.choice(fits)
    # Crowded small images: fall back to the easiest mode that still needs its words.
    scene = _try_scene(rng, image_size, n, mode, 200) or _try_scene(
        rng, image_size, n, "colour" if n > 1 else mode, 400
    )
    if scene is None:
        raise RuntimeError(
            f"cannot place {n} shapes in a {image_size}px image; use a larger image_size or fewer shapes"
        )
    return scene


def refer(scene: Scene, j: int) -> str | None:
    """A phrase that singles out shape ``j`` of ``scene`` (its own phrase for the target), or None.

    The fewest words that no other shape matches: colour and kind, then size too, then (the
    relation mode's twin of the target) the opposite relation to the same anchor.
    """
    if j == scene.target:
        return scene.phrase
    s = scene.shapes[j]
    for with_size, with_pattern in ((False, False), (True, False), (False, True)):
        if sum(o.name(with_size, with_pattern) == s.name(with_size, with_pattern) for o in scene.shapes) == 1:
            return f"the {s.name(with_size, with_pattern)}"
    if scene.anchor is not None and j != scene.anchor:
        a, rel = scene.shapes[scene.anchor], _OPPOSITE[scene.relation]
        assert s.box is not None and a.box is not None
        twins = [o for o in scene.shapes if o.name(True) == s.name(True) and o.box and _holds(rel, o.box, a.box)]
        if twins == [s]:
            return f"the {s.name()} {rel} the {a.name()}"
    return None


def draw(scene: Scene, image_size: int, background: tuple[int, int, int]) -> Image.Image:
    im = Image.new("RGB", (image_size, image_size), background)
    d = ImageDraw.Draw(im)
    for s in scene.shapes:
        assert s.box is not None
        x1, y1, x2, y2 = int(s.box.x1), int(s.box.y1), int(s.box.x2) - 1, int(s.box.y2) - 1
        fill = COLOURS[s.colour]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        if s.kind == "circle":
            d.ellipse([x1, y1, x2, y2], fill=fill)
        elif s.kind == "square":
            d.rectangle([x1, y1, x2, y2], fill=fill)
        elif s.kind == "triangle":
            d.polygon([(x1, y2), (x2, y2), (mx, y1)], fill=fill)
        else:  # diamond
            d.polygon([(mx, y1), (x2, my), (mx, y2), (x1, my)], fill=fill)
        if s.pattern == "striped":
            _stripe(im, (x1, y1, x2 + 1, y2 + 1), fill)
    return im


def _stripe(im: Image.Image, box: tuple[int, int, int, int], fill: tuple[int, int, int]) -> None:
    """Repaint the ``fill`` pixels inside ``box`` as stripes whose mean is ``fill``."""
    amp = [min(STRIPE_AMPLITUDE, c, 255 - c) for c in fill]
    light, dark = (tuple(c + a for c, a in zip(fill, amp, strict=True)),
                   tuple(c - a for c, a in zip(fill, amp, strict=True)))
    px = im.load()
    for y in range(box[1], box[3]):
        row = light if (y // (STRIPE_PERIOD // 2)) % 2 == 0 else dark
        for x in range(box[0], box[2]):
            if px[x, y] == fill:
                px[x, y] = row


def render_scene(rng: random.Random, image_size: int, max_shapes: int, modes: tuple[str, ...] | None = None,
                 min_shapes: int = 1) -> tuple[Image.Image, Scene]:
    """A scene and its picture on a light grey background, both drawn from ``rng``."""
    scene = make_scene(rng, image_size, max_shapes, modes, min_shapes)
    grey = rng.randint(225, 255)
    return draw(scene, image_size, (grey, grey, grey)), scene


# ---- samples -------------------------------------------------------------------------

Answer = Callable[[str, Box, int, int], str]
Prompt = Callable[[str], str]


def position_word(box: Box, width: int, height: int) -> str:
    """Where a box's centre lies on a 3x3 grid: 'top left' ... 'centre' ... 'bottom right'."""
    cx, cy = (box.x1 + box.x2) / 2 / width, (box.y1 + box.y2) / 2 / height
    col = "left" if cx < 1 / 3 else "right" if cx >= 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy >= 2 / 3 else ""
    return " ".join(w for w in (row, col) if w) or "centre"


def toolqa_texts(scene: Scene, image_size: int) -> tuple[str, str, str]:
    """(question, seed-style reasoning A3 with a ``{Crop ..}`` call, short answer)."""
    t = scene.shapes[scene.target]
    assert t.box is not None
    where = position_word(t.box, image_size, image_size)
    q = f"Where in the image is {scene.phrase}?"
    answer = f"It is in the {where} of the image." if where != "centre" else "It is in the centre of the image."
    a3 = (
        f"<think>\nI need to find {scene.phrase}.\n{format_crop_brace(t.name(), t.box)}\n"
        f"In the crop I can see a {t.name(with_size=True)}.\n</think>\n\n<answer>{answer}</answer>"
    )
    return q, a3, answer


def crop_region(box: Box, size: int, margin: float = CROP_MARGIN) -> Box:
    """``box`` grown by ``margin`` x its side on each edge, clipped to the ``size`` x ``size`` image."""
    mx, my = (box.x2 - box.x1) * margin, (box.y2 - box.y1) * margin
    return Box(max(0.0, box.x1 - mx), max(0.0, box.y1 - my), min(float(size), box.x2 + mx), min(float(size), box.y2 + my))


def generate(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    image_size: int = 64,
    max_shapes: int = 3,
    kind: Kind = "grounding",
    answer: Answer = coords.plain_grounding_answer,
    prompt: Prompt = coords.plain_grounding_prompt,
    crop_fraction: float = 0.5,
    targets_per_image: int = 1,
    text_first: bool = False,
    modes: tuple[str, ...] | None = None,
    min_shapes: int = 1,
) -> list[Sample]:
    """Write ``n`` images under ``out_dir/images`` and return their canonical samples.

    Args:
        out_dir: directory for the images; it is the samples' image root (media paths are
            relative to it).
        n: number of samples.
        seed: everything is a function of (seed, sample index).
        image_size: side of the square images in pixels.
        max_shapes: shapes per image are drawn uniformly from 1..max_shapes.
        kind: "grounding" (prompt -> box text), "toolqa" (question -> reasoning that crops
            the target, then the answer), "mixed" (each sample either, by the seed),
            "grounding_crop" (grounding prompt -> a crop call around the target, the crop as a
            tool turn, then the box text) or "grounding_mixed" (each sample "grounding" or
            "grounding_crop"; ``crop_fraction`` of them crop).
        crop_fraction: share of "grounding_crop" samples in "grounding_mixed".
        targets_per_image: consecutive samples that share one picture, each naming another
            of its shapes (as RefCOCO refers to several objects of an image): with one picture
            and several answers, only the phrase tells them apart. A picture with fewer
            shapes than this is followed by pictures of their own. 1: every sample its own.
        text_first: the user turn puts the phrase (or question) before the image, so that in
            a causal language model the image tokens can attend to the phrase; default the
            image first, as the families' own prompts do.
        answer: the family's grounding answer for (phrase, box, width, height); default the
            neutral labelled pixel JSON.
        prompt: the family's grounding prompt for a phrase; default a neutral question.

    Returns:
        Samples with ``targets`` (the phrase and its pixel box), ``regions`` (every shape),
        ``image_sizes`` and ``meta`` (n_shapes, mode, kind, answer, seed, index).
    """
    if n < 0 or not 1 <= min_shapes <= max_shapes <= MAX_SHAPES or image_size < 16:
        raise ValueError(
            f"need n >= 0, 1 <= min_shapes <= max_shapes <= {MAX_SHAPES}, image_size >= 16 "
            f"(got {n}, {min_shapes}, {max_shapes}, {image_size})"
        )
    if unknown := [m for m in modes or () if m not in MODES]:
        raise ValueError(f"modes must be among {', '.join(MODES)}, got {', '.join(unknown)}")
    if kind not in KINDS_OF_SAMPLE:
        raise ValueError(f"kind must be one of {', '.join(KINDS_OF_SAMPLE)}, got {kind!r}")
    if not 0.0 <= crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in [0, 1], got {crop_fraction}")
    if targets_per_image < 1:
        raise ValueError(f"targets_per_image must be >= 1, got {targets_per_image}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    others: list[Scene] = []  # the current picture's other shapes that a phrase can single out
    for i in range(n):
        j, r = divmod(i, targets_per_image)  # picture j, its r-th sample
        # String seeds hash deterministically (unlike hash()), independent of PYTHONHASHSEED.
        if r == 0:
            rng = random.Random(f"vlm_train.synthetic/{seed}/{j}")
            image, first = render_scene(rng, image_size, max_shapes, modes, min_shapes)
            scene, rel, fresh = first, f"images/{seed}_{j:06d}.png", True
            others = [replace(first, target=x, phrase=p) for x in range(len(first.shapes))
                      if x != first.target and (p := refer(first, x))]
        else:
            rng = random.Random(f"vlm_train.synthetic/{seed}/{j}/{r}")
            if r <= len(others):
                scene, rel, fresh = others[r - 1], f"images/{seed}_{j:06d}.png", False
            else:
                image, scene = render_scene(rng, image_size, max_shapes, modes, min_shapes)
                rel, fresh = f"images/{seed}_{j:06d}_{r}.png", True
        if fresh:
            image.save(out / rel)
        this_kind = kind
        if kind == "mixed":
            this_kind = rng.choice(("grounding", "toolqa"))
        elif kind == "grounding_mixed":
            this_kind = "grounding_crop" if rng.random() < crop_fraction else "grounding"
        sample = _sample(scene, rel, image_size, this_kind, answer, prompt, seed, i, text_first)
        if targets_per_image > 1:
            sample.meta["picture"] = j
        samples.append(sample)
    return samples


def _sample(
    scene: Scene, rel: str, size: int, kind: str, answer_of: Answer, prompt: Prompt, seed: int, i: int,
    text_first: bool = False,
) -> Sample:
    def user(text: str) -> Message:
        parts = [Part("image", media=rel), Part("text", text=text)]
        return Message("user", parts[::-1] if text_first else parts)

    t = scene.shapes[scene.target]
    assert t.box is not None
    regions = [GroundingTarget(s.name(with_size=True, with_pattern=s.pattern != "plain"), s.box)
               for s in scene.shapes if s.box is not None]
    meta = {
        "n_shapes": len(scene.shapes),
        "mode": scene.mode,
        "kind": kind,
        "seed": seed,
        "index": i,
        "target_index": scene.target,
    }
    if kind == "grounding":
        answer = answer_of(scene.phrase, t.box, size, size)
        messages = [
            user(prompt(scene.phrase)),
            Message("assistant", [Part("text", text=answer)]),
        ]
        meta["answer"] = answer
    elif kind == "grounding_crop":
        answer = answer_of(scene.phrase, t.box, size, size)
        # Twins in a quadrant (pattern mode): the crop is that quadrant, which shows both at
        # twice the view's resolution; a policy can aim at it from the view alone.
        region = scene.zone or crop_region(t.box, size)
        messages = [
            user(prompt(scene.phrase)),
            Message("assistant", [Part("tool_call", tool="crop", box=region)]),
            Message("tool", [Part("tool_response", source=rel, box=region)]),
            Message("assistant", [Part("text", text=answer)]),
        ]
        meta["answer"] = answer
        meta["crop_box"] = region.as_list()
    else:
        q, a3, answer = toolqa_texts(scene, size)
        messages = [user(q)]
        messages += split_tool_calls(a3, rel, (size, size))
        meta["answer"] = answer
    return Sample(
        id=f"synth-{seed}-{i:06d}",
        messages=messages,
        image_sizes=[(size, size)],
        targets=[GroundingTarget(scene.phrase, t.box)],
        regions=regions,
        meta=meta,
    )
