"""TRL-compatible reward functions: ``fn(completions, **dataset_columns) -> list[float]``.

Columns read (each a list with one cell per completion; a missing column reads as all None):

- ``image_size``: [w, h] of the original image. Without it no box can be converted.
- ``target_box``: [x1, y1, x2, y2] in original pixels, or None.
- ``regions``: list of {"label", "box"} (pixels) a crop call may aim at, or None.
- ``answer``: the gold answer string, or None.
- ``prompts`` (TRL passes it): a text prompt ending in ``<think>`` (a template that opens the
  thinking block itself) counts as the completion's opening ``<think>``.
- ``coords``: the family's coordinate convention (``Family.coords.name``) of JSON ``bbox_2d``
  and bare lists: "1000" (0-1000) or "unit" ([0, 1)); missing or unknown reads as "pixels"
  (with a one-time warning).

Every function returns one finite float per completion within the range its docstring states,
and never raises: a completion that breaks a function (a bug, not bad text, since the parser is
total) gets the function's minimum and a logged warning, so one odd sample cannot end a run.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vlm_train.config_base import ConfigError
from vlm_train.data.coords import CONVENTIONS, valid_size
from vlm_train.data.sample import Box
from vlm_train.eval.metrics import iou
from vlm_train.rewards.completion import rollout_parts
from vlm_train.rewards.parse import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    Parsed,
    parse_rollout,
)

log = logging.getLogger(__name__)

RewardFn = Callable[..., list[float]]

REGION_MIN_IOU = 0.1
"""A crop call whose best IoU with every annotated region is below this found nothing."""
REGION_MISS_PENALTY = 0.5
"""Score of a crop call that found nothing (or is malformed): -REGION_MISS_PENALTY."""

_warned: set[str] = set()


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg)


@dataclass
class Item:
    """One completion with its dataset cells, parsed once per reward call."""

    texts: list[str]
    parsed: Parsed
    target: Box | None
    regions: list[Box]
    answer: str | None


def _as_box(cell: object) -> Box | None:
    if isinstance(cell, Box):
        vals = cell.as_list()
    elif isinstance(cell, Mapping):
        if "box" in cell:
            return _as_box(cell["box"])
        vals = [cell.get(k) for k in ("x1", "y1", "x2", "y2")]
    elif isinstance(cell, (list, tuple)) and len(cell) == 4:
        vals = list(cell)
    else:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in vals)
    except (TypeError, ValueError, OverflowError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    return Box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _regions(cell: object) -> list[Box]:
    if not isinstance(cell, (list, tuple)):
        return []
    return [b for b in (_as_box(r) for r in cell) if b is not None]


def _column(kwargs: Mapping[str, object], name: str, n: int) -> list[object]:
    col = kwargs.get(name)
    if isinstance(col, (list, tuple)) and len(col) == n:
        return list(col)
    if col is not None:
        _warn_once(f"col:{name}", f"reward column {name!r} is not a list of {n} cells; read as all None")
    return [None] * n


def _think_prefilled(prompt: object) -> bool:
    """A text prompt whose template already opened ``<think>`` (the completion starts inside it).

    Only text prompts show this; conversational prompts are rendered by TRL out of sight.
    """
    return isinstance(prompt, str) and prompt.rstrip().endswith(THINK_OPEN)


def _items(completions: object, kwargs: Mapping[str, object]) -> list[Item | None]:
    try:
        comps = list(completions)  # type: ignore[call-overload]
    except TypeError:
        return []
    n = len(comps)
    sizes, targets, regions, answers, coords, prompts = (
        _column(kwargs, k, n) for k in ("image_size", "target_box", "regions", "answer", "coords", "prompts")
    )
    out: list[Item | None] = []
    for i, c in enumerate(comps):
        try:
            conv = coords[i]
            if conv not in CONVENTIONS:
                _warn_once(f"coords:{conv!r}", f"reward column 'coords' is {conv!r}; reading boxes as pixels")
                conv = "pixels"
            texts, calls = rollout_parts(c)
            if _think_prefilled(prompts[i]):
                texts[0] = THINK_OPEN + texts[0]
            parsed = parse_rollout(texts, valid_size(sizes[i]), conv, calls)
            ans = answers[i] if isinstance(answers[i], str) else None
            out.append(Item(texts, parsed, _as_box(targets[i]), _regions(regions[i]), ans))
        except Exception as e:  # the parser is total; this guards against bugs, see module doc
            _warn_once(f"parse:{type(e).__name__}", f"reward parsing failed ({e!r}); scoring the minimum")
            out.append(None)
    return out


def _reward(name: str, per_item: Callable[[Item], float], low: float, high: float = 1.0) -> RewardFn:
    """Wrap a per-completion scorer as a TRL reward function named ``name``.

    Scores are clamped to [low, high]: a mean of in-range values can land an ulp outside.
    """

    def fn(completions: object, **kwargs: object) -> list[float]:
        scores = []
        for item in _items(completions, kwargs):
            try:
                v = low if item is None else float(per_item(item))
            except Exception as e:
                _warn_once(f"{name}:{type(e).__name__}", f"reward {name} failed ({e!r}); scoring {low}")
                v = low
            scores.append(min(high, max(low, v)) if math.isfinite(v) else low)
        return scores

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = per_item.__doc__
    return fn


# ---- scorers --------------------------------------------------------------------------------


def _first_iou(item: Item) -> float:
    if item.target is None or not item.parsed.answer_boxes:
        return 0.0
    return iou(item.parsed.answer_boxes[0].box, item.target)


def _iou(item: Item) -> float:
    """Grounding IoU of the first answer box with ``target_box``. Range [0, 1], continuous.

    0 when there is no answer box, no target or no image size.
    """
    return _first_iou(item)


def _iou_hit(threshold: float) -> Callable[[Item], float]:
    def score(item: Item) -> float:
        return 1.0 if item.target is not None and _first_iou(item) >= threshold else 0.0

    score.__doc__ = (
        f"1.0 when the first answer box has IoU >= {threshold} with ``target_box``, else 0.0. Range {{0, 1}}."
    )
    return score


def _region(item: Item) -> float:
    """Crop calls scored against the annotated ``regions``. Range [-0.5, 1].

    Each call scores its best IoU over the regions when that is >= REGION_MIN_IOU (0.1), and
    -REGION_MISS_PENALTY (-0.5) when it is lower or the call is malformed; the reward is the mean
    over calls. 0 when there are no calls or no annotated regions (nothing to judge).
    """
    calls = item.parsed.tool_calls
    if not calls or not item.regions:
        return 0.0
    total = 0.0
    for c in calls:
        best = max((iou(c.box.box, r) for r in item.regions), default=0.0) if c.box is not None else 0.0
        total += best if (c.well_formed and best >= REGION_MIN_IOU) else -REGION_MISS_PENALTY
    return total / len(calls)


_ARTICLES = {"a", "an", "the"}
_GOLD_LETTER = re.compile(r"\(?([A-Da-d])\)?[.:)]?")
_LEAD_LETTER = re.compile(r"(?:\(([A-D])\)|([A-D])[.:)])(?:\s|$)")
# "(?:\s*:)?\s*" not ":?\s*" after "\s*": adjacent \s* would backtrack quadratically.
_SAID_LETTER = re.compile(r"(?i:answer)(?:\s+(?i:is))?(?:\s*:)?\s*\(?([A-D])(?![A-Za-z])")


def normalize_answer(s: str) -> str:
    """Lower-case, NFKC, punctuation to spaces, articles dropped, whitespace collapsed."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in s)
    return " ".join(w for w in s.split() if w not in _ARTICLES)


def choice_letter(text: str) -> str | None:
    """The option letter (A-D) a response picks: "B", "(b)", "B. red", "... answer is C"."""
    t = text.strip()
    m = _GOLD_LETTER.fullmatch(t)
    if m:
        return m.group(1).upper()
    m = _LEAD_LETTER.match(t)
    if m:
        return m.group(1) or m.group(2)
    said = list(_SAID_LETTER.finditer(t))
    return said[-1].group(1) if said else None


def _answer(item: Item) -> float:
    """Answer accuracy against ``answer``. Range {0, 1}.

    A gold answer that is a choice letter (A-D, e.g. "B", "(b)", "C.") scores 1 when the
    predicted letter (``choice_letter``) equals it; any other gold scores 1 on a normalised exact
    match (``normalize_answer``). The prediction is the answer part of the completion (after
    ``</think>``, inside ``<answer>`` when present). 0 without a gold answer.
    """
    if item.answer is None:
        return 0.0
    pred = item.parsed.answer_text
    gold_letter = _GOLD_LETTER.fullmatch(item.answer.strip())
    if gold_letter:
        return 1.0 if choice_letter(pred) == gold_letter.group(1).upper() else 0.0
    gold = normalize_answer(item.answer)
    return 1.0 if gold and normalize_answer(pred) == gold else 0.0


def _format(item: Item) -> float:
    """Format: 1.0 when all hold, else 0.0. Range {0, 1}.

    The assistant text (all turns joined) starts with ``<think>``, holds exactly one
    ``<think>`` and one ``</think>`` in that order, is followed by a non-empty answer (when
    ``<answer>``/``</answer>`` appear after ``</think>``: exactly one pair, non-empty inside),
    and every tool call is well formed.
    """
    t = "\n".join(item.texts)
    if not t.lstrip().startswith(THINK_OPEN) or t.count(THINK_OPEN) != 1 or t.count(THINK_CLOSE) != 1:
        return 0.0
    close = t.find(THINK_CLOSE)
    if close < t.find(THINK_OPEN):
        return 0.0
    after = t[close:]
    if ANSWER_OPEN in after or ANSWER_CLOSE in after:
        if after.count(ANSWER_OPEN) != 1 or after.count(ANSWER_CLOSE) != 1:
            return 0.0
        if after.find(ANSWER_CLOSE) < after.find(ANSWER_OPEN):
            return 0.0
    if not item.parsed.answer_text:
        return 0.0
    return 1.0 if all(c.well_formed for c in item.parsed.tool_calls) else 0.0


def _box_valid(item: Item) -> float:
    """Box validity: share of boxes written correctly. Range [0, 1].

    Counted: every answer box read and every tool call. A box is valid when its corners are in
    order, it lies inside the image in its convention and has non-zero area; a malformed tool
    call counts as invalid. 0 when the completion holds neither (points are not boxes).
    """
    p = item.parsed
    n = len(p.answer_boxes) + len(p.tool_calls)
    if n == 0:
        return 0.0
    good = sum(b.valid for b in p.answer_boxes)
    good += sum(1 for c in p.tool_calls if c.well_formed and c.box is not None and c.box.valid)
    return good / n


# ---- registry -------------------------------------------------------------------------------

DEFAULT_IOU_THRESHOLD = 0.5

iou_reward = _reward("iou", _iou, 0.0)
iou_hit_reward = _reward("iou_hit", _iou_hit(DEFAULT_IOU_THRESHOLD), 0.0)
region_reward = _reward("region", _region, -REGION_MISS_PENALTY)
answer_reward = _reward("answer", _answer, 0.0)
format_reward = _reward("format", _format, 0.0)
box_valid_reward = _reward("box_valid", _box_valid, 0.0)

REWARDS: dict[str, RewardFn] = {
    f.__name__: f for f in (iou_reward, iou_hit_reward, region_reward, answer_reward, format_reward, box_valid_reward)
}
"""Name (the key under ``rewards.weights``) -> reward function."""

RANGES: dict[str, tuple[float, float]] = {
    "iou": (0.0, 1.0),
    "iou_hit": (0.0, 1.0),
    "region": (-REGION_MISS_PENALTY, 1.0),
    "answer": (0.0, 1.0),
    "format": (0.0, 1.0),
    "box_valid": (0.0, 1.0),
}


def build_reward_funcs(
    weights: Mapping[str, float], iou_threshold: float = DEFAULT_IOU_THRESHOLD, prefix: str = "rewards"
) -> tuple[list[RewardFn], list[float]]:
    """Reward functions and their weights, in the order of ``weights`` (for GRPOConfig.reward_weights).

    Args:
        weights: ``rewards.weights`` of the config: name -> weight.
        iou_threshold: ``rewards.iou_threshold``, the IoU at which ``iou_hit`` pays 1.
        prefix: Config key of the rewards section, for error messages.

    Raises:
        ConfigError: unknown reward name, non-numeric weight, empty weights or a threshold
            outside (0, 1]; the key is named (e.g. ``rewards.weights.ioo``).
    """
    if not isinstance(iou_threshold, (int, float)) or isinstance(iou_threshold, bool) or not 0 < iou_threshold <= 1:
        raise ConfigError(f"{prefix}.iou_threshold", f"must be a number in (0, 1], got {iou_threshold!r}")
    if not weights:
        raise ConfigError(f"{prefix}.weights", f"no reward selected; choose from {', '.join(REWARDS)}")
    funcs, ws = [], []
    for name, w in weights.items():
        if name not in REWARDS:
            raise ConfigError(f"{prefix}.weights.{name}", f"unknown reward; known rewards: {', '.join(REWARDS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ConfigError(f"{prefix}.weights.{name}", f"weight must be a finite number, got {w!r}")
        fn = _reward("iou_hit", _iou_hit(float(iou_threshold)), 0.0) if name == "iou_hit" else REWARDS[name]
        funcs.append(fn)
        ws.append(float(w))
    return funcs, ws


def reward_names() -> Sequence[str]:
    return tuple(REWARDS)
