"""Grounding metrics: IoU, Acc@0.5 (the RefCOCO protocol of docs/models.md), mean IoU, per-group splits and
the random-shape baseline.

Boxes are original-image pixels (x1, y1, x2, y2), as ``vlm_train.data.sample.Box`` or any
sequence of four numbers. Areas are continuous (x2 - x1) * (y2 - y1): no "+1" pixel-inclusive
convention, which VLM-R1 mixes inconsistently with an exclusive union (docs/models.md, "RefCOCO protocol").
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

from vlm_train.data.sample import Box

BoxLike = Box | Sequence[float]

ACC_IOU = 0.5
"""The RefCOCO protocol counts a prediction correct at IoU >= 0.5 (``>=``, as the official script of
docs/models.md, "RefCOCO protocol"; VLM-R1 uses ``>``)."""


def _coords(b: BoxLike) -> tuple[float, float, float, float] | None:
    if isinstance(b, Box):
        vals = (b.x1, b.y1, b.x2, b.y2)
    else:
        try:
            if len(b) != 4:
                return None
            vals = tuple(float(v) for v in b)
        except (TypeError, ValueError, OverflowError):
            return None
    return vals if all(math.isfinite(v) for v in vals) else None  # type: ignore[return-value]


def iou(a: BoxLike | None, b: BoxLike | None) -> float:
    """Intersection over union of two boxes, in [0, 1].

    A missing, malformed, non-finite or zero-area box scores 0. Inverted corners (x2 < x1) count
    as zero width: callers that want swapped corners fixed do so when parsing.
    """
    ca, cb = (_coords(a) if a is not None else None), (_coords(b) if b is not None else None)
    if ca is None or cb is None:
        return 0.0
    ax1, ay1, ax2, ay2 = ca
    bx1, by1, bx2, by2 = cb
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    area_a = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
    area_b = max(0.0, bx2 - bx1) * max(0.0, by2 - by1)
    union = area_a + area_b - inter
    if union <= 0 or not math.isfinite(union):
        return 0.0
    return max(0.0, min(1.0, inter / union))


@dataclass
class GroundingScore:
    """Acc@threshold and mean IoU of ``n`` predictions (both 0.0 when n == 0)."""

    n: int
    acc: float
    mean_iou: float
    threshold: float = ACC_IOU

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score_ious(ious: Sequence[float], threshold: float = ACC_IOU) -> GroundingScore:
    """Acc@``threshold`` (fraction with IoU >= threshold) and mean IoU of precomputed IoUs."""
    n = len(ious)
    if n == 0:
        return GroundingScore(0, 0.0, 0.0, threshold)
    return GroundingScore(n, sum(1 for v in ious if v >= threshold) / n, sum(ious) / n, threshold)


def score_boxes(
    preds: Sequence[BoxLike | None], targets: Sequence[BoxLike], threshold: float = ACC_IOU
) -> tuple[GroundingScore, list[float]]:
    """Score predictions against targets, pairwise.

    A prediction of None (nothing parsed) has IoU 0, as the protocol's (0, 0, 0, 0) fallback.

    Returns:
        The score and the per-sample IoUs (for grouping or logging).

    Raises:
        ValueError: ``preds`` and ``targets`` differ in length.
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    ious = [iou(p, t) for p, t in zip(preds, targets, strict=True)]
    return score_ious(ious, threshold), ious


def score_by_group(
    ious: Sequence[float], groups: Sequence[Hashable], threshold: float = ACC_IOU
) -> dict[Hashable, GroundingScore]:
    """Per-group scores (e.g. grouped by the number of shapes in the image), keys sorted when comparable.

    Raises:
        ValueError: ``ious`` and ``groups`` differ in length.
    """
    if len(ious) != len(groups):
        raise ValueError(f"{len(ious)} IoUs for {len(groups)} group labels")
    by: dict[Hashable, list[float]] = {}
    for v, g in zip(ious, groups, strict=True):
        by.setdefault(g, []).append(v)
    try:
        keys = sorted(by)
    except TypeError:  # mixed key types: keep first-seen order
        keys = list(by)
    return {k: score_ious(by[k], threshold) for k in keys}


def random_shape_hit_rate(shapes: Sequence[BoxLike], target: BoxLike, threshold: float = ACC_IOU) -> float:
    """Chance that a random pick among ``shapes`` has IoU >= ``threshold`` with ``target``.

    An image without shapes gives 0 (there is nothing to pick).
    """
    if not shapes:
        return 0.0
    return sum(1 for s in shapes if iou(s, target) >= threshold) / len(shapes)


def random_shape_baseline(
    shapes_per_image: Sequence[Sequence[BoxLike]], targets: Sequence[BoxLike], threshold: float = ACC_IOU
) -> float:
    """Expected Acc@``threshold`` of a perfect localiser that boxes a random shape of the image.

    Mean over images of (#shapes with IoU >= threshold against the target) / #shapes. A model
    that boxes shapes well but ignores the referring phrase scores this; grounding must beat it.
    0.0 for no images.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(shapes_per_image) != len(targets):
        raise ValueError(f"{len(shapes_per_image)} shape lists for {len(targets)} targets")
    if not targets:
        return 0.0
    rates = [random_shape_hit_rate(s, t, threshold) for s, t in zip(shapes_per_image, targets, strict=True)]
    return sum(rates) / len(rates)


@dataclass
class NamedShapeShare:
    """Of ``hits`` predictions that hit some shape of their image, ``named`` hit the named one.

    ``share`` = named / hits (0.0 when nothing hit a shape). A model that boxes shapes well but
    picks one at random scores about 1/k on k-shape images; one that reads the phrase scores 1.
    """

    hits: int
    named: int

    @property
    def share(self) -> float:
        return self.named / self.hits if self.hits else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"named_shape_share": self.share, "shape_hits": self.hits}


def shape_hit(pred: BoxLike | None, target: BoxLike, shapes: Sequence[BoxLike], threshold: float = ACC_IOU) -> tuple[bool, bool]:
    """(the prediction hit some shape, it hit the named one): IoU >= ``threshold`` with a shape of
    ``shapes`` (the target counts as one), and with ``target``."""
    if pred is None:
        return False, False
    named = iou(pred, target) >= threshold
    return named or any(iou(pred, s) >= threshold for s in shapes), named


def named_shape_share(
    preds: Sequence[BoxLike | None], targets: Sequence[BoxLike], shapes_per_image: Sequence[Sequence[BoxLike]],
    threshold: float = ACC_IOU,
) -> NamedShapeShare:
    """The named-shape share of predictions against their images' shapes (see ``NamedShapeShare``).

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(preds) == len(targets) == len(shapes_per_image):
        raise ValueError(f"{len(preds)} predictions, {len(targets)} targets, {len(shapes_per_image)} shape lists")
    hits = [shape_hit(p, t, s, threshold) for p, t, s in zip(preds, targets, shapes_per_image, strict=True)]
    return NamedShapeShare(sum(h for h, _ in hits), sum(n for _, n in hits))
