"""The training-side entry point: configured sources (or synthetic data) -> validated samples.

``load_dataset`` reads every source of ``data.train`` / ``data.eval`` (any format,
``format: auto`` detected), or generates ``data.synthetic`` into the work directory when a
split has no sources; validates each sample; and follows ``data.on_error``: ``skip`` drops
the sample, counts it and logs it with file:line and reason; ``raise`` stops at the first
problem. Either way more problems than ``data.max_error_fraction`` of all samples is a
DataError: a dataset that is mostly broken must not train quietly on its remainder.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_train.data import formats, synthetic
from vlm_train.data.errors import BAD_FIELD, DataError, DataIssue, SampleProblem
from vlm_train.data.formats.base import ReadOptions
from vlm_train.data.sample import Sample
from vlm_train.data.validate import Validator, real_roots

log = logging.getLogger(__name__)

# The eval split of synthetic data uses a seed derived from the train seed, so the two
# splits are independent draws (positions, sizes, colours, background): an image of one
# split reappearing in the other is vanishingly rare (one-shape scenes: ~1 in 5e7).
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class LoadResult:
    """What ``load_dataset`` returns.

    Attributes:
        samples: valid samples (repeats applied); media paths are absolute and inside
            ``image_roots``; ``image_sizes`` measured.
        image_roots: every root media may come from (pass it to media loaders and the crop tool).
        errors: every skipped problem, with file:line and reason.
        stats: counts (see ``sample_stats``) plus errors by class.
    """

    samples: list[Sample]
    image_roots: list[str]
    errors: list[DataIssue] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def sample_stats(samples: list[Sample]) -> dict[str, Any]:
    """Samples, images / videos / tool calls per sample (mean and max)."""

    def per(fn) -> dict[str, float]:
        vals = [fn(s) for s in samples] or [0]
        return {"mean": round(sum(vals) / len(vals), 3), "max": max(vals), "total": sum(vals)}

    def count(s: Sample, kind: str) -> int:
        return sum(1 for m in s.messages for p in m.content if p.type == kind)

    return {
        "samples": len(samples),
        "images_per_sample": per(lambda s: count(s, "image")),
        "videos_per_sample": per(lambda s: count(s, "video")),
        "tool_calls_per_sample": per(lambda s: count(s, "tool_call")),
    }


def _repeat(samples: list[Sample], factor: float) -> list[Sample]:
    """``factor`` copies; a fractional part takes the first share of the samples (a meta
    file's repeat_time < 1 subsamples the same way in the official loader; docs/models.md)."""
    whole = int(factor)
    extra = round((factor - whole) * len(samples))
    return samples * whole + samples[:extra]


class _Collector:
    def __init__(self, on_error: str):
        self.on_error = on_error
        self.errors: list[DataIssue] = []
        # Problems found while reading stand for records that never became samples.
        self.unread = 0

    def add(self, issue: DataIssue, unread: bool = False) -> None:
        self.unread += unread
        if self.on_error == "raise":
            raise DataError.of(issue)
        log.warning("skipping sample: %s", issue)
        self.errors.append(issue)


def _issue_for(sample: Sample, e: SampleProblem) -> DataIssue:
    return DataIssue(e.kind, e.reason, str(sample.meta.get("source", "")), sample.meta.get("line"), sample.id)


def _family_text(family: Any | None) -> dict[str, Any]:
    if family is None:
        return {}
    return {"answer": family.grounding_answer, "prompt": family.grounding_prompt}


def load_dataset(
    data_cfg: Any,
    split: str = "train",
    work_dir: str | Path | None = None,
    family: Any | None = None,
    validate: bool = True,
    require_assistant: bool = True,
    length_fn: Callable[[Sample], int] | None = None,
    max_length: int | None = None,
    decode: bool = True,
    workers: int | None = None,
    require_image: bool = False,
) -> LoadResult:
    """Read, validate and return one split of the configured data.

    Args:
        data_cfg: ``vlm_train.config.DataConfig``.
        split: "train" or "eval".
        work_dir: where synthetic data is written (``<work_dir>/synthetic/<split>``); needed
            only when the split is synthetic.
        family: a ``Family``; its ``box_to_text`` / ``grounding_prompt`` format synthetic and
            RefCOCO answers. None: the neutral pixel JSON of vlm_train/data/coords.py.
        validate: run the media/box checks (the CLI's ``check`` and training do).
        require_assistant: samples need an assistant turn (False for prompt-only sets).
        length_fn: token length of a sample (e.g. the family tokenizer's); with
            ``max_length``, longer samples are problems of class ``too_long``. Leave it out
            when the family's input builder truncates instead (never inside an image span).
        max_length: the longest sample kept when ``length_fn`` is given.
        decode: decode every image once (catches truncated files); False reads headers
            only, for very large datasets whose full decode at start costs too much.
        workers: threads that open images ahead of the in-order checks (None: up to 8,
            one per core); problems are still reported in file order.
        require_image: every sample needs an image part (jobs with a GRPO stage).

    Returns:
        LoadResult. An eval split with no sources and no synthetic config is empty.

    Raises:
        DataError: ``on_error: raise`` and a problem; more problems than
            ``max_error_fraction``; or no usable sample in the train split.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    sources = data_cfg.train if split == "train" else data_cfg.eval
    collect = _Collector(data_cfg.on_error)
    validator = Validator(
        roots=list(data_cfg.image_roots),
        max_pixels=data_cfg.max_image_pixels,
        require_assistant=require_assistant,
        length_fn=length_fn,
        max_length=max_length,
        decode=decode,
        reserved_text=tuple(getattr(family, "reserved_text", ())),
        takes_video=getattr(family, "takes_video", True),
        require_image=require_image,
        num_frames=data_cfg.num_frames,
        max_images=data_cfg.max_images_per_sample,
    )
    roots: list[str] = list(data_cfg.image_roots)
    samples: list[Sample] = []
    n_read = 0
    if sources:
        text = _family_text(family)
        for src in sources:
            opts = ReadOptions(image_root=src.image_root, roots=tuple(data_cfg.image_roots), **text)
            roots.append(opts.root_for(src.path))
            kept: list[Sample] = []
            items = list(_read_source(src.path, src.format, opts))
            if validate:
                validator.prefetch([x for x in items if isinstance(x, Sample)], workers)
            for item in items:
                if isinstance(item, DataIssue):
                    collect.add(item, unread=True)
                    continue
                n_read += 1
                # The loader stamped this root (the source's, or a format's root confined to
                # the configured ones), so adding it never widens what the config allows.
                if item.meta.get("image_root"):
                    roots.append(str(item.meta["image_root"]))
                if _keep(item, validator, validate, collect):
                    kept.append(item)
            samples += _apply_repeats(kept, src.repeat)
    elif data_cfg.synthetic is not None:
        if work_dir is None:
            raise ValueError("synthetic data needs a work_dir to write its images to")
        syn = data_cfg.synthetic
        out = Path(work_dir) / "synthetic" / split
        seed = syn.seed if split == "train" else syn.seed + EVAL_SEED_OFFSET
        n = syn.n if split == "train" else syn.n_eval
        generated = synthetic.generate(
            out, n, seed, syn.image_size, syn.max_shapes, syn.kind, crop_fraction=syn.crop_fraction,
            targets_per_image=syn.targets_per_image if split == "train" else 1, text_first=syn.text_first,
            modes=tuple(syn.modes) if syn.modes else None, min_shapes=syn.min_shapes, **_family_text(family)
        )
        roots.append(str(out.resolve()))
        for s in generated:
            s.meta.update(source=str(out), image_root=str(out.resolve()))
            n_read += 1
            if _keep(s, validator, validate, collect):
                samples.append(s)
    elif split == "train":
        raise DataError("no training data: give data.train sources or data.synthetic")
    errors = collect.errors
    total = n_read + collect.unread
    by_kind = Counter(e.kind for e in errors)
    if errors and total and len(errors) / total > data_cfg.max_error_fraction:
        kinds = ", ".join(f"{k}: {v}" for k, v in by_kind.most_common())
        first = "\n  ".join(str(e) for e in errors[:5])
        raise DataError(
            f"{len(errors)} of {total} samples of the {split} split have problems ({kinds}), over "
            f"data.max_error_fraction={data_cfg.max_error_fraction}; first ones:\n  {first}",
            errors,
        )
    if split == "train" and not samples:
        raise DataError(
            "the train split has no usable sample" + (f" ({len(errors)} problems)" if errors else ""), errors
        )
    stats = sample_stats(samples)
    stats.update(read=n_read, records=total, skipped=len(errors), errors_by_kind=dict(by_kind))
    return LoadResult(samples, real_roots(roots), errors, stats)


def _read_source(path: str, fmt: str, opts: ReadOptions):
    if not Path(path).is_file():
        yield DataIssue(BAD_FIELD, "not a data file" if Path(path).exists() else "data file not found", str(path))
        return
    yield from formats.read(path, fmt, opts)


def _keep(sample: Sample, validator: Validator, validate: bool, collect: _Collector) -> bool:
    if not validate:
        return True
    try:
        validator.check(sample)
        return True
    except SampleProblem as e:
        collect.add(_issue_for(sample, e))
        return False


def _apply_repeats(samples: list[Sample], factor: float) -> list[Sample]:
    """Per dataset of a conversations_meta file its repeat_time, times the source's own repeat."""
    groups: dict[Any, list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.meta.get("dataset"), s.meta.get("repeat", 1)), []).append(s)
    out: list[Sample] = []
    for (_, rep), group in groups.items():
        out += _repeat(group, factor * float(rep))
    return out
