"""SFT -> GRPO -> evaluation in one job, resumable stage by stage.

Evaluates the base model, then trains each configured stage starting from the previous
stage's final model (a LoRA stage hands on its merged model), evaluating after each. A
pipeline submitted again skips the stages (and evaluations) already complete and resumes an
interrupted stage from its last checkpoint. ``report.json`` in the run directory holds, per
stage: Acc@0.5, mean IoU, the random-shape baseline, the named-shape share, Acc@0.5 and the
named-shape share by number of shapes, the held-out curve during training (``heldout``: one
entry per ``eval_steps``), reward means at the start and end of training, tool-call validity
and wall time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.data.prepare import PreparedData, prepare_data
from vlm_train.launch.ray_launch import connect_ray, materialise_model, placement, run_stage, train_fn
from vlm_train.models import get_family
from vlm_train.train.final import final_dir
from vlm_train.train.heldout import PREFIX as HELDOUT

log = logging.getLogger("vlm_train")


def stage_model(cfg: JobConfig, stage: str) -> Path | None:
    pointer = final_dir(cfg, stage) / "MODEL"
    return final_dir(cfg, stage) / pointer.read_text().strip() if pointer.is_file() else None


def stage_done(cfg: JobConfig, stage: str) -> bool:
    status = cfg.run_dir / "stages" / f"{stage}.json"
    return status.is_file() and json.loads(status.read_text()).get("complete", False) and stage_model(cfg, stage) is not None


def evaluate_remote(cfg: JobConfig, data: PreparedData, model_dir: Path, tag: str, step: int) -> dict[str, Any]:
    """Evaluate on one worker of the job's pool (a GPU when the pool has them)."""
    import ray

    from vlm_train.eval.grounding import evaluate_checkpoint

    p = placement(cfg)
    task = ray.remote(num_cpus=p.pool.cpus_per_worker, num_gpus=1 if p.use_gpu else 0)(evaluate_checkpoint)
    return ray.get(task.remote(
        str(model_dir), cfg.model.family, str(data.eval), data.image_roots,
        str(cfg.run_dir / "eval" / f"{tag}.json"), str(cfg.run_dir / "tensorboard" / "eval"), f"eval/{tag}", step,
    ))


def log_history(cfg: JobConfig, stage: str) -> list[dict[str, Any]]:
    status = cfg.run_dir / "stages" / f"{stage}.json"
    return json.loads(status.read_text()).get("log_history", []) if status.is_file() else []


def heldout_curve(cfg: JobConfig, stage: str) -> dict[str, Any]:
    """The held-out evaluations made while the stage trained (vlm_train.train.heldout)."""
    curve = [e for e in log_history(cfg, stage) if f"{HELDOUT}/acc@0.5" in e]
    return {"heldout": curve} if curve else {}


def reward_summary(cfg: JobConfig, stage: str) -> dict[str, Any]:
    hist = [e for e in log_history(cfg, stage) if "reward" in e]
    if not hist:
        return {}
    keys = sorted(k for k in hist[0] if k.startswith("rewards/") and k.endswith("/mean"))
    k = max(1, len(hist) // 4)  # mean over the first and last quarter of logged steps
    first, last = hist[:k], hist[-k:]

    def mean(rows, key):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else None

    out = {"reward_start": mean(first, "reward"), "reward_end": mean(last, "reward")}
    for key in keys:
        out[f"{key[len('rewards/'):-len('/mean')]}_start"] = mean(first, key)
        out[f"{key[len('rewards/'):-len('/mean')]}_end"] = mean(last, key)
    calls = mean(hist, "tools/calls_per_rollout")
    if calls is not None:
        out["tool_calls_per_rollout"] = calls
    return out


def run_pipeline(cfg: JobConfig) -> dict[str, Any]:
    family = get_family(cfg.model.family)
    cfg = materialise_model(cfg, family)
    data = prepare_data(cfg, family)
    connect_ray(cfg, placement(cfg))
    report_path = cfg.run_dir / "report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.is_file() else {}

    def save() -> None:
        report_path.write_text(json.dumps(report, indent=2))

    model_dir = Path(cfg.model.path)
    evaluate = data.eval is not None and data.n_eval > 0
    if evaluate and "base" not in report:
        report["base"] = {"eval": evaluate_remote(cfg, data, model_dir, "base", 0), "wall_seconds": 0.0}
        save()
    for i, stage in enumerate(s for s in cfg.stages if s in ("sft", "grpo")):
        stage_cfg = replace(cfg, model=replace(cfg.model, path=str(model_dir)))
        if stage_done(cfg, stage):
            log.info("pipeline: %s already complete, skipping", stage)
        else:
            t0 = time.perf_counter()
            run_stage(stage_cfg, stage, train_fn(stage), extra={"data": data.to_json()})
            if not stage_done(cfg, stage):
                raise RuntimeError(f"stage {stage} ended without a final model (stopped early?)")
            report.setdefault(stage, {})["wall_seconds"] = time.perf_counter() - t0
            save()
        model_dir = stage_model(cfg, stage)
        entry = report.setdefault(stage, {})
        if evaluate and "eval" not in entry:
            entry["eval"] = evaluate_remote(cfg, data, model_dir, stage, i + 1)
        entry.update(reward_summary(cfg, stage))
        entry.update(heldout_curve(cfg, stage))
        entry["model"] = str(model_dir)
        save()
    return report


def table(report: dict[str, Any]) -> str:
    """A short table for stdout: one row per evaluated stage."""
    head = f"{'stage':<6} {'Acc@0.5':>8} {'mIoU':>6} {'random':>7} {'named':>6} {'reward0':>8} {'reward1':>8} {'calls':>6} {'wall s':>7}"
    lines = [head, "-" * len(head)]

    def f(v, w, p=3):
        return f"{v:>{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"

    for stage, e in report.items():
        ev = e.get("eval", {})
        lines.append(
            f"{stage:<6} {f(ev.get('acc'), 8)} {f(ev.get('mean_iou'), 6)} {f(ev.get('random_shape_baseline'), 7)} "
            f"{f(ev.get('named_shape_share'), 6)} "
            f"{f(e.get('reward_start'), 8)} {f(e.get('reward_end'), 8)} {f(e.get('tool_calls_per_rollout'), 6, 2)} "
            f"{f(e.get('wall_seconds'), 7, 0)}"
        )
    for stage, e in report.items():
        if e.get("heldout"):
            points = " ".join(f"{h['step']}:{h[f'{HELDOUT}/acc@0.5']:.3f}" for h in e["heldout"])
            lines.append(f"{stage} held-out Acc@0.5 by step: {points}")
    return "\n".join(lines)
