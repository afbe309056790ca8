"""Training rows from the prepared canonical JSONL (the collator renders them per family)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vlm_train.data.sample import Sample


def read_samples(path: Path) -> list[Sample]:
    return [Sample.from_json(line) for line in Path(path).read_text().splitlines() if line.strip()]


def dataset_of(records: list[dict[str, Any]]):
    """A datasets.Dataset of ``records``, fingerprinted by a hash of their JSON.

    ``Dataset.from_list`` fingerprints its Arrow table through dill, whose global-name scan
    disassembles a function with ``dis.dis``; inside a Ray worker that disassembly leaked to
    the console. Our own fingerprint skips that scan (and is cheaper).
    """
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    digest = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Dataset(InMemoryTable(pa.Table.from_pylist(records)), fingerprint=digest)


def rows(samples: list[Sample]):
    """A datasets.Dataset of JSON-encoded samples (our collator decodes them)."""
    return dataset_of([{"sample": s.to_json()} for s in samples])
