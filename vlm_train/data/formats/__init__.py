"""Readers and writers of every supported data format, and format detection.

Each format module exposes ``read(path, opts) -> Iterator[Sample | DataIssue]`` and
``write(samples, path)``. Readers never raise for bad data: every problem is yielded as a
DataIssue naming file and line, and the caller decides (skip or raise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vlm_train.data.errors import BAD_FIELD, DataError, DataIssue
from vlm_train.data.formats import canonical, conversations, conversations_meta, refcoco, toolqa, trl
from vlm_train.data.formats.base import ReadOptions
from vlm_train.data.formats.jsonio import read_records
from vlm_train.data.sample import Sample

Reader = Callable[..., Iterator[Sample | DataIssue]]
Writer = Callable[[list[Sample], str | Path], None]

FORMATS: dict[str, tuple[Reader, Writer]] = {
    # Named after the file layouts, not the models that publish data in them: any family trains
    # on any format (the LLaVA-style "conversations" records of the official fine-tuning data of
    # several families, and the meta file naming several such annotation files; docs/models.md,
    # "Seed data formats").
    "conversations": (conversations.read, conversations.write),
    "conversations_meta": (conversations_meta.read, conversations_meta.write),
    "toolqa": (toolqa.read, toolqa.write),
    "refcoco": (refcoco.read, refcoco.write),
    "trl": (trl.read, trl.write),
    "canonical": (canonical.read, canonical.write),
}


def classify(obj: Any) -> str | None:
    """The format a first record looks like (None when it matches none)."""
    if conversations_meta.is_meta(obj):
        return "conversations_meta"
    if not isinstance(obj, dict):
        return None
    if "QnA" in obj and "image_path" in obj:
        return "toolqa"
    if "sent" in obj and "bbox" in obj:
        return "refcoco"
    if "conversations" in obj:
        return "conversations"
    if "messages" in obj:
        msgs = obj["messages"] if isinstance(obj["messages"], list) else []
        parts = [p for m in msgs if isinstance(m, dict) and isinstance(m.get("content"), list) for p in m["content"]]
        canonical_like = (
            "image_sizes" in obj or "targets" in obj or any(isinstance(p, dict) and "media" in p for p in parts)
        )
        return "canonical" if canonical_like else "trl"
    return None


def detect_format(path: str | Path) -> str:
    """Detect a file's format from its first readable record; DataError when impossible."""
    issues = []
    for rec in read_records(path, unwrap_key="conversations"):
        if isinstance(rec, DataIssue):
            issues.append(rec)
            if len(issues) >= 5:
                break
            continue
        fmt = classify(rec[1])
        if fmt is None:
            keys = sorted(rec[1]) if isinstance(rec[1], dict) else type(rec[1]).__name__
            raise DataError(
                f"{path}:{rec[0]}: cannot tell the data format from a record with keys {keys}; set format: explicitly"
            )
        return fmt
    reason = "; ".join(str(i) for i in issues) or "no records"
    raise DataError(f"{path}: cannot detect the data format ({reason})", issues)


def read(path: str | Path, fmt: str = "auto", opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    """Samples and issues of one file in format ``fmt`` ("auto": detected)."""
    if fmt == "auto":
        try:
            fmt = detect_format(path)
        except DataError as e:
            yield from (e.issues or [DataIssue(BAD_FIELD, str(e), str(path))])
            return
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r} (known: {', '.join(FORMATS)})")
    yield from FORMATS[fmt][0](path, opts)


def write(samples: list[Sample], path: str | Path, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r} (known: {', '.join(FORMATS)})")
    FORMATS[fmt][1](samples, path)


__all__ = ["FORMATS", "ReadOptions", "classify", "detect_format", "read", "write"]
