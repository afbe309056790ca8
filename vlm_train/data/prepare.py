"""Driver-side data preparation: read, synthesise and validate once, before any worker starts.

Workers then read the validated canonical JSONL from the run directory (shared storage on
clusters), so every rank trains on exactly the same, already-checked samples and a bad
sample is reported once, by the driver, with its file:line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from vlm_train.config import JobConfig
from vlm_train.data.sample import Sample

log = logging.getLogger("vlm_train")


@dataclass
class PreparedData:
    train: Path
    eval: Path | None
    image_roots: list[str]
    n_train: int
    n_eval: int
    n_skipped: int

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


def prepare_data(cfg: JobConfig, family) -> PreparedData:
    """Load every split named by ``cfg.data`` into ``<run_dir>/data``; idempotent for a run."""
    from vlm_train.data.load import load_dataset

    run = cfg.run_dir
    out, meta = run.data, run.prepared
    if meta.is_file():  # a resubmitted run trains on the very same samples
        d = json.loads(meta.read_text())
        return PreparedData(
            Path(d["train"]), Path(d["eval"]) if d["eval"] else None, d["image_roots"], d["n_train"], d["n_eval"], d["n_skipped"]
        )
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset(cfg.data, split="train", work_dir=out, family=family)
    evals = load_dataset(cfg.data, split="eval", work_dir=out, family=family) if cfg.data.has_eval_split else None
    _write(run.split("train"), train.samples)
    if evals is not None:
        _write(run.split("eval"), evals.samples)
    roots = sorted(set(train.image_roots) | set(evals.image_roots if evals else []))
    skipped = len(train.errors) + (len(evals.errors) if evals else 0)
    p = PreparedData(
        run.split("train"), run.split("eval") if evals else None, roots, len(train.samples), len(evals.samples) if evals else 0, skipped
    )
    meta.write_text(json.dumps(p.to_json(), indent=2))
    log.info("data: %d train, %d eval samples, %d skipped", p.n_train, p.n_eval, p.n_skipped)
    return p


def _write(path: Path, samples: list[Sample]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(s.to_json() + "\n" for s in samples))
    tmp.replace(path)
