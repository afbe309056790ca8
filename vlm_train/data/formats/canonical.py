"""The canonical sample as JSONL (``Sample.to_json`` per line): lossless, the interchange format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_train.data.errors import DataIssue
from vlm_train.data.formats.base import PROVENANCE_KEYS, ReadOptions, require_dict, samples_from_records, stamp
from vlm_train.data.formats.jsonio import read_records, write_jsonl
from vlm_train.data.sample import Sample

# Where a sample was read from describes the reading, not the data: not written back.
READ_META = PROVENANCE_KEYS


def read(path: str | Path, opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    opts = opts or ReadOptions()
    root = opts.root_for(path)

    def convert(obj: Any, source: str, line: int) -> list[Sample]:
        return [stamp(Sample.from_dict(require_dict(obj, "sample")), source, line, root)]

    yield from samples_from_records(read_records(path), str(path), convert)


def sample_to_record(s: Sample) -> dict[str, Any]:
    d = s.to_dict()
    d["meta"] = {k: v for k, v in d["meta"].items() if k not in READ_META}
    return d


def write(samples: list[Sample], path: str | Path) -> None:
    write_jsonl(path, [sample_to_record(s) for s in samples])
