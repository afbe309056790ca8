"""Driver-side data preparation: read, synthesise and validate once, before any worker starts.

Workers then read the validated canonical JSONL from the run directory (shared storage on
clusters), so every rank trains on exactly the same, already-checked samples and a bad
sample is reported once, by the driver, with its file:line. ``prepared.json`` records a
fingerprint of what the samples depend on: a changed data config prepares them again, and a
damaged ``prepared.json`` is re-derived the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from vlm_train.config import JobConfig
from vlm_train.data.sample import Sample
from vlm_train.runstate import read_json, write_json_atomic, write_text_atomic

log = logging.getLogger("vlm_train")


@dataclass
class PreparedData:
    train: Path
    eval: Path | None
    image_roots: list[str]
    n_train: int
    n_eval: int
    n_skipped: int
    fingerprint: str = ""

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


def data_fingerprint(cfg: JobConfig, family) -> str:
    """What the prepared samples depend on: the data config, the family (its text formats and
    validation rules) and whether a GRPO stage needs images. A change prepares them again."""
    what = {"data": cfg.to_dict()["data"], "family": getattr(family, "name", None), "grpo": "grpo" in cfg.stages}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_data(cfg: JobConfig, family) -> PreparedData:
    """Load every split named by ``cfg.data`` into ``<run_dir>/data``; idempotent for a run."""
    from vlm_train.data.load import load_dataset

    run = cfg.run_dir
    out, meta = run.data, run.prepared
    key = data_fingerprint(cfg, family)
    d = read_json(meta)  # missing or damaged: prepared again
    if d is not None and d.get("fingerprint") != key:
        log.warning("data: the data config changed since %s was written; preparing the data again", meta)
        d = None
    if d is not None and Path(d["train"]).is_file():  # a resubmitted run trains on the very same samples
        return PreparedData(
            Path(d["train"]), Path(d["eval"]) if d["eval"] else None, d["image_roots"], d["n_train"], d["n_eval"],
            d["n_skipped"], key,
        )
    out.mkdir(parents=True, exist_ok=True)
    # GRPO rollouts crop each prompt's first image: a sample without one is refused here.
    need_image = "grpo" in cfg.stages
    train = load_dataset(cfg.data, split="train", work_dir=out, family=family, require_image=need_image)
    evals = (load_dataset(cfg.data, split="eval", work_dir=out, family=family, require_image=need_image)
             if cfg.data.has_eval_split else None)
    _write(run.split("train"), train.samples)
    if evals is not None:
        _write(run.split("eval"), evals.samples)
    roots = sorted(set(train.image_roots) | set(evals.image_roots if evals else []))
    skipped = len(train.errors) + (len(evals.errors) if evals else 0)
    p = PreparedData(
        run.split("train"), run.split("eval") if evals else None, roots, len(train.samples),
        len(evals.samples) if evals else 0, skipped, key,
    )
    write_json_atomic(meta, p.to_json())
    log.info("data: %d train, %d eval samples, %d skipped", p.n_train, p.n_eval, p.n_skipped)
    return p


def _write(path: Path, samples: list[Sample]) -> None:
    write_text_atomic(path, "".join(s.to_json() + "\n" for s in samples))
