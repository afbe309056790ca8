"""The evaluation job (``python -m jobs.evaluate CONFIG``): named grounding sets, sharded over
the pool's workers through Ray (one model per worker), merged deterministically.

Each set is scored with the RefCOCO protocol (docs/models.md; vlm_train/eval/grounding.py): Acc@0.5, mean
IoU, box validity. Sets whose samples carry every shape of the image (synthetic ones) also get
Acc@0.5 by number of shapes, the random-shape baseline and the named-shape share. Outputs in
``evaluation.out`` (default ``<run dir>/evaluate``): ``report.json``, ``predictions/<set>.jsonl``,
and TensorBoard scalars plus box images (truth green, prediction red) under ``tensorboard/``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlm_train.config import ConfigError, DataConfig, EvalSetConfig, JobConfig, SourceConfig
from vlm_train.data.sample import Sample
from vlm_train.eval.grounding import gradable, log_to_tensorboard, score_texts
from vlm_train.models.base import InputsConfig

log = logging.getLogger("vlm_train")


def load_set(es: EvalSetConfig, cfg: JobConfig, family: Any, work_dir: Path) -> tuple[list[Sample], list[str]]:
    """Samples (grounding ones only, ``limit`` applied) and image roots of one set."""
    from vlm_train.data.load import load_dataset

    if es.synthetic is not None:
        dc = DataConfig(synthetic=es.synthetic, image_roots=cfg.data.image_roots)
        res = load_dataset(dc, split="eval", work_dir=work_dir / "sets" / es.name, family=family)
    else:
        src = SourceConfig(es.path, es.format, es.image_root)
        dc = replace(cfg.data, train=[], eval=[src], synthetic=None)
        res = load_dataset(dc, split="eval", family=family)
    samples = gradable(res.samples)[: es.limit]
    if not samples:
        raise ConfigError(f"evaluation.sets[{es.name}]", f"no grounding sample in {es.path or 'the synthetic set'}", cfg.source)
    if res.errors:
        log.warning("set %s: %d samples skipped (first: %s)", es.name, len(res.errors), res.errors[0])
    return samples, res.image_roots


class Predictor:
    """One model on one Ray worker: completions for a shard of samples."""

    def __init__(self, model_path: str, dtype: str):
        import torch

        from vlm_train.infer.source import load, resolve

        src = resolve(model_path)
        self.family = src.family
        self.model, self.processor = load(src, dtype=dtype)
        if torch.cuda.is_available():
            self.model = self.model.cuda()

    def predict(self, rows: list[str], roots: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
        from vlm_train.eval.grounding import generate_texts

        samples = [Sample.from_json(r) for r in rows]
        builder = self.family.make_inputs(self.processor, InputsConfig(image_roots=tuple(roots)))
        return generate_texts(self.model, self.processor, self.family, builder, samples, batch_size, max_new_tokens)


def run_evaluation(cfg: JobConfig) -> dict[str, Any]:
    """Evaluate ``cfg.model.path`` (a checkpoint or a run directory) on ``cfg.evaluation.sets``."""
    import ray

    from vlm_train.infer.source import resolve_job_model
    from vlm_train.launch.plan import placement
    from vlm_train.launch.ray_env import connect_ray

    cfg, src = resolve_job_model(cfg)
    family, ev = src.family, cfg.evaluation
    out = Path(ev.out) if ev.out else Path(cfg.run_dir) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    sets = {es.name: load_set(es, cfg, family, out) for es in ev.sets}
    p = placement(cfg)
    connect_ray(cfg, p)
    actor = ray.remote(num_cpus=p.pool.cpus_per_worker, num_gpus=1 if p.use_gpu else 0)(Predictor)
    workers = [actor.remote(str(cfg.model.path), cfg.model.dtype) for _ in range(p.num_workers)]
    t0 = time.perf_counter()
    # Round-robin shards of every set; the i-th sample's completion goes back to slot i, so the
    # merged order (and the report) does not depend on which worker finished first.
    pending = []
    for name, (samples, roots) in sets.items():
        for w, worker in enumerate(workers):
            idx = list(range(w, len(samples), len(workers)))
            if idx:
                rows = [samples[i].to_json() for i in idx]
                pending.append((name, idx, worker.predict.remote(rows, roots, ev.batch_size, ev.max_new_tokens)))
    texts: dict[str, list[str]] = {name: [""] * len(s) for name, (s, _) in sets.items()}
    for name, idx, ref in pending:
        for i, t in zip(idx, ray.get(ref), strict=True):
            texts[name][i] = t
    for w in workers:
        ray.kill(w)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {"model": str(src.weights), "family": family.name, "workers": len(workers), "sets": {}}
    for name, (samples, roots) in sets.items():
        report["sets"][name] = _score_set(family, name, samples, roots, texts[name], out, ev.images_per_set)
    report["seconds"] = seconds
    report["report"] = str(out / "report.json")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _score_set(family: Any, name: str, samples: list[Sample], roots: list[str], texts: list[str], out: Path,
               n_images: int) -> dict[str, Any]:
    result = score_texts(family, samples, texts)
    entry = result.to_dict()
    entry.pop("seconds")
    shaped = all(s.regions for s in samples)
    if shaped:
        entry.update(named_share=entry["named_shape_share"], hit_some_shape=entry["shape_hits"])
    else:  # RefCOCO-style: one annotated object per sample, no shape statistics
        for k in ("random_shape_baseline", "by_shapes", "named_shape_share", "shape_hits"):
            entry[k] = None
    preds = out / "predictions" / f"{name}.jsonl"
    preds.parent.mkdir(parents=True, exist_ok=True)
    preds.write_text("".join(json.dumps(p) + "\n" for p in result.predictions))
    log_to_tensorboard(result, out / "tensorboard", f"evaluate/{name}", 0, roots, n_images)
    if shaped:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out / "tensorboard")) as w:
            w.add_scalar(f"evaluate/{name}/named_shape_share", entry["named_share"], 0)
            w.add_scalar(f"evaluate/{name}/box_valid", entry["box_valid"], 0)
    entry["predictions"] = str(preds)
    return entry


def table(report: dict[str, Any]) -> str:
    head = f"{'set':<16} {'n':>5} {'Acc@0.5':>8} {'mIoU':>6} {'valid':>6} {'random':>7} {'named':>6}"
    lines = [head, "-" * len(head)]

    def f(v, w):
        return f"{v:>{w}.3f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"

    for name, e in report["sets"].items():
        lines.append(f"{name:<16} {e['n']:>5} {f(e['acc'], 8)} {f(e['mean_iou'], 6)} {f(e['box_valid'], 6)} "
                     f"{f(e.get('random_shape_baseline'), 7)} {f(e.get('named_share'), 6)}")
    return "\n".join(lines)
