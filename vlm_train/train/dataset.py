"""Training rows from the prepared canonical JSONL (the collator renders them per family)."""

from __future__ import annotations

from pathlib import Path

from vlm_train.data.sample import Sample


def read_samples(path: Path) -> list[Sample]:
    return [Sample.from_json(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rows(samples: list[Sample]):
    """A datasets.Dataset of JSON-encoded samples (our collator decodes them)."""
    from datasets import Dataset

    return Dataset.from_list([{"sample": s.to_json()} for s in samples])
