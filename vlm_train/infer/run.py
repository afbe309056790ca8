"""Batch inference over a file of prompts, one JSONL line per prompt, resumable.

Each output line: ``id``, ``response`` (the whole completion, tool calls included), ``thinking``
(inside the think block), ``answer`` (after it), ``answer_boxes`` (pixels and the family's own
text form), ``tool_calls`` (call text, box in pixels, whether it was executed), ``tokens``
(sampled), ``seconds`` (the batch's wall time per prompt).

Lines are appended and flushed batch by batch. ``infer.resume`` skips ids already in the
output; without it an existing output is an error (nothing is overwritten). Two engines give
the same records for the same inputs: one process (``local``), or Ray Data ``map_batches``
with one model actor per worker of the pool (``ray``; GPU actors on GPU pools, CPU actors on
the embedded default). The batches are formed on the driver either way, so batch composition
(and with it every greedy completion) does not depend on the engine.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.data.sample import Sample
from vlm_train.infer.prompts import read_prompts


class OutputExists(ValueError):
    pass


def output_path(cfg: JobConfig) -> Path:
    return Path(cfg.infer.out) if cfg.infer.out else Path(cfg.run_dir) / "infer" / "predictions.jsonl"


def done_ids(out: Path) -> set[str]:
    """Ids already answered (a torn last line from a killed run is ignored and rewritten)."""
    ids = set()
    if out.is_file():
        for line in out.read_text().splitlines():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON fields of an engine record (in-memory extras such as crop images start with _)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _chunks(samples: list[Sample], n: int) -> list[list[Sample]]:
    return [samples[i : i + n] for i in range(0, len(samples), n)]


def _local(cfg: JobConfig, batches: list[list[Sample]], roots: list[str]) -> Iterator[list[dict[str, Any]]]:
    from vlm_train.infer.engine import Engine

    engine = Engine(cfg, roots)
    for batch in batches:
        yield [public(r) for r in engine(batch)]


class _Actor:
    """Ray Data callable class: one Engine per actor, a row = one driver-formed batch."""

    def __init__(self, cfg: dict[str, Any], roots: list[str]):
        from vlm_train.infer.engine import Engine

        self.engine = Engine(JobConfig.from_dict(cfg), roots)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = [json.dumps([public(r) for r in self.engine([Sample.from_json(x) for x in json.loads(b)])]) for b in batch["batch"]]
        return {"records": np.array(out, dtype=object)}


def _ray(cfg: JobConfig, batches: list[list[Sample]], roots: list[str]) -> Iterator[list[dict[str, Any]]]:
    import ray.data

    from vlm_train.launch.plan import placement
    from vlm_train.launch.ray_env import connect_ray

    p = placement(cfg)
    connect_ray(cfg, p)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output lines in input order
    items = [{"batch": json.dumps([s.to_json() for s in b])} for b in batches]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _Actor, fn_constructor_kwargs={"cfg": cfg.to_dict(), "roots": roots}, batch_size=1,
        concurrency=min(p.num_workers, len(items)), num_cpus=p.pool.cpus_per_worker, num_gpus=1 if p.use_gpu else 0,
    )
    for row in ds.iter_rows():
        yield json.loads(row["records"])


def engine_name(cfg: JobConfig) -> str:
    if cfg.infer.engine != "auto":
        return cfg.infer.engine
    return "ray" if cfg.cluster.address or os.environ.get("RAY_ADDRESS") else "local"


def run_inference(cfg: JobConfig, progress: bool = True) -> dict[str, Any]:
    """Answer every prompt of ``cfg.infer.data`` not yet in the output. Returns a summary."""
    from tqdm import tqdm

    from vlm_train.infer.source import resolve_job_model

    inf = cfg.infer
    if inf.data is None:
        from vlm_train.config import ConfigError

        raise ConfigError("infer.data", "no prompt file given", cfg.source)
    cfg, src = resolve_job_model(cfg)
    out = output_path(cfg)
    if out.exists() and not inf.resume:
        raise OutputExists(f"{out}: exists; pass --resume (infer.resume=true) to continue it, or choose another output")
    prompts = read_prompts(inf.data, inf.format, inf.image_root, cfg.data, src.family)
    for issue in prompts.skipped:
        print(f"skipped: {issue}", file=sys.stderr)
    done = done_ids(out)
    todo = [s for s in prompts.samples if s.id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_line(out)
    engine = engine_name(cfg)
    batches = _chunks(todo, inf.batch_size)
    written = 0
    if batches:
        run = _ray if engine == "ray" else _local
        with out.open("a") as f, tqdm(total=len(todo), unit="prompt", disable=not progress, file=sys.stderr) as bar:
            for records in run(cfg, batches, prompts.image_roots):
                f.write("".join(json.dumps(r) + "\n" for r in records))
                f.flush()
                written += len(records)
                bar.update(len(records))
    return {"out": str(out), "engine": engine, "written": written, "already_done": len(done & {s.id for s in prompts.samples}),
            "skipped": len(prompts.skipped), "model": str(src.weights), "family": src.family.name}


def _drop_torn_line(out: Path) -> None:
    """A run killed mid-write can leave a last line without its newline: cut it so appends stay JSONL."""
    if out.is_file() and out.stat().st_size:
        data = out.read_bytes()
        if not data.endswith(b"\n"):
            out.write_bytes(data[: data.rfind(b"\n") + 1])
