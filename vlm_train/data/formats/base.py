"""What every format module shares: read options, the record -> sample error wrapper."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_train.data import coords
from vlm_train.data.errors import BAD_FIELD, DataIssue, SampleProblem
from vlm_train.data.sample import Box, Message, Sample
from vlm_train.data.toolcalls import CoordSystem, split_tool_calls


@dataclass
class ReadOptions:
    """How a reader interprets a file.

    Attributes:
        image_root: folder relative media paths resolve against (default: the file's folder).
        answer: the family's grounding answer for (phrase, box, width, height); used where a
            format stores a box rather than a text answer (RefCOCO).
        prompt: family grounding prompt for a phrase (RefCOCO).
        json_coords: coordinate system of JSON crop calls in assistant text.
        roots: the configured roots (``data.image_roots``); a root a format names itself
            (a conversations_meta file's ``root``) must resolve inside one of them or inside
            ``root_for(path)``, so a data file can never widen the roots it was given.
    """

    image_root: str | None = None
    answer: Callable[[str, Box, int, int], str] = coords.plain_grounding_answer
    prompt: Callable[[str], str] = coords.plain_grounding_prompt
    json_coords: CoordSystem = "pixels"
    roots: tuple[str, ...] = ()

    def root_for(self, path: str | Path) -> str:
        return str(Path(self.image_root or Path(path).parent).resolve())

    def confine_root(self, root: str | Path, path: str | Path) -> str | None:
        """``root`` (a root a data file names) resolved, when it lies inside a root the
        config gave (``roots`` or ``root_for(path)``); None when it would widen them."""
        real = Path(root).resolve()
        allowed = [Path(r).resolve() for r in (*self.roots, self.root_for(path))]
        return str(real) if any(real == a or a in real.parents for a in allowed) else None


RecordFn = Callable[[Any, str, int], list[Sample]]


def samples_from_records(records: Iterator[Any], source: str, convert: RecordFn) -> Iterator[Sample | DataIssue]:
    """Apply ``convert(record, source, line)`` to every record, turning problems into issues."""
    for rec in records:
        if isinstance(rec, DataIssue):
            yield rec
            continue
        line, obj = rec
        sid = str(obj.get("id")) if isinstance(obj, dict) and obj.get("id") is not None else None
        try:
            yield from convert(obj, source, line)
        except SampleProblem as e:
            yield DataIssue(e.kind, e.reason, source, line, sid)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # Wrong field types in hand-edited data: report, never crash the whole read.
            yield DataIssue(BAD_FIELD, f"{type(e).__name__}: {e}", source, line, sid)
        except RecursionError:  # e.g. a tool call's JSON arguments nested 100,000 deep
            yield DataIssue(BAD_FIELD, "a field is nested too deeply", source, line, sid)


# Meta keys that say where a sample was read from and which root its media resolve against.
# They are the loader's: whatever a data file writes under these keys is overwritten, so a row
# with ``"meta": {"image_root": "/"}`` cannot let its own media escape the configured roots.
PROVENANCE_KEYS = ("source", "line", "image_root")


def stamp(sample: Sample, source: str, line: int, root: str) -> Sample:
    """Record where a sample came from; media resolution and error messages use it."""
    sample.meta.update(source=source, line=line, image_root=root)
    return sample


def assistant_messages(text: str, images: list[str], size: tuple[int, int] | None, opts: ReadOptions) -> list[Message]:
    """An assistant turn; crop calls in it become tool_call + tool messages."""
    return split_tool_calls(text, images[0] if images else None, size, opts.json_coords)


def require_dict(obj: Any, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SampleProblem(BAD_FIELD, f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def media_list(value: Any, key: str, embed_dir: Path | None = None, root: str | None = None) -> list[str]:
    """Media paths of a record field: a path, a list of paths, or HF datasets' Image feature
    ``{"bytes": .., "path": ..}``. Embedded bytes are written once to ``embed_dir`` (named by
    their hash) and referenced relative to ``root``, so every later step sees a plain file."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, dict) and v.get("bytes") and embed_dir is not None and root is not None:
            v = _embed(bytes(v["bytes"]), embed_dir, root)
        elif isinstance(v, dict) and isinstance(v.get("path"), str):
            v = v["path"]
        if not isinstance(v, str) or not v:
            raise SampleProblem(BAD_FIELD, f"{key!r} must be a path or a list of paths, got {str(v)[:80]!r}")
        out.append(v)
    return out


def _embed(data: bytes, embed_dir: Path, root: str) -> str:
    ext = ".png" if data.startswith(b"\x89PNG") else ".jpg" if data.startswith(b"\xff\xd8") else ".img"
    path = embed_dir / (hashlib.sha1(data).hexdigest() + ext)
    if not path.exists():
        embed_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: concurrent readers never see half a file
    return os.path.relpath(path, root)


def record_id(obj: dict[str, Any], source: str, line: int) -> tuple[str, dict[str, Any]]:
    """(sample id, meta to remember how the file spelled it) of a record.

    Records without an id get ``<file stem>:<line>``; writers leave such ids out again, and
    write a numeric id back as a number, so files round-trip unchanged.
    """
    raw = obj.get("id")
    if raw is None:
        return f"{Path(source).stem}:{line}", {"id_generated": True}
    return str(raw), ({} if isinstance(raw, str) else {"id_raw": raw})


def written_id(sample: Sample) -> Any | None:
    """The id to write for ``sample`` (None: the source had none)."""
    if sample.meta.get("id_generated"):
        return None
    return sample.meta.get("id_raw", sample.id)


def with_id(sample: Sample, rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with the sample's id first (when it has one to write)."""
    sid = written_id(sample)
    return ({"id": sid} if sid is not None else {}) | rec
