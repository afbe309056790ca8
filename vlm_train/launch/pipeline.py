"""The one driver behind every job: the configured stages in order, resumable stage by stage.

Each training stage starts from the previous stage's final model (a LoRA stage hands on its
merged model). With ``eval`` last in ``stages``, the input model and every stage's final model
are evaluated on the eval split. A pipeline submitted again skips the stages (and evaluations)
already complete (refusing one that another config trained: vlm_train.launch.same_job) and
resumes an interrupted stage from its last checkpoint. ``report.json`` in
the run directory holds, per stage: Acc@0.5, mean IoU, the random-shape baseline, the
named-shape share, Acc@0.5 and the named-shape share by number of shapes, the held-out curve
during training (``heldout``: one entry per ``eval_steps``), reward means at the start and end of training, tool-call validity and wall time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.data.prepare import prepare_data
from vlm_train.launch.base_model import materialise_model
from vlm_train.launch.console import fmt_duration, quiet_driver, unwrap
from vlm_train.launch.evaluate import evaluate_remote
from vlm_train.launch.plan import placement
from vlm_train.launch.ray_env import connect_ray
from vlm_train.launch.report import heldout_curve, reward_summary, stage_status
from vlm_train.launch.same_job import check_stage, record_stage
from vlm_train.launch.trainer import run_stage
from vlm_train.models import get_family
from vlm_train.run_dir import RunDir
from vlm_train.runstate import read_json, run_lock, write_json_atomic

log = logging.getLogger("vlm_train")


class StageFailed(RuntimeError):
    """A stage's failure, named by the worker's own exception (not Ray's wrapper) and its log."""

    def __init__(self, stage: str, cause: BaseException, run_dir: RunDir, log_path: Path | None = None,
                 max_failures: int | None = None):
        rank, cause = unwrap(cause)
        if log_path is not None:  # a driver-side task (evaluation): its output goes to one log
            where = f"full log: {log_path}"
        elif rank is None:
            where = f"full logs: {run_dir.logs / stage} (workers), {run_dir.driver_log} (driver)"
        else:  # the failed worker's own log holds its traceback
            where = f"full log: {run_dir.worker_log(stage, rank)}"
        on = "" if rank is None else f" on rank {rank}"
        # Ray Train restarts the worker group on any worker failure until max_failures is used up.
        tries = "" if not max_failures or max_failures < 0 else (
            f" after {max_failures} restart{'s' if max_failures != 1 else ''} (run.max_failures={max_failures})")
        super().__init__(f"{stage} failed{on}{tries}: {type(cause).__name__}: {cause}\n{where}")
        self.stage = stage


@dataclass
class PipelineResult:
    report: dict[str, Any]
    stopped: str | None = None
    """The training stage that stopped before its end (run.stop_at_step), if one did."""


def stage_done(cfg: JobConfig, stage: str) -> bool:
    status = stage_status(cfg.run_dir, stage)
    return bool(status and status.get("complete")) and cfg.run_dir.final_model(stage) is not None


def evaluate_model(cfg: JobConfig, data: Any, model_dir: Path, tag: str, step: int) -> dict[str, Any]:
    """One model's held-out evaluation (a Ray task); a failure names its own exception and log."""
    try:
        return evaluate_remote(cfg, data, model_dir, tag, step)
    except Exception as e:  # Ray's RayTaskError wraps the task's exception
        raise StageFailed(f"evaluation of {tag}", e, cfg.run_dir, log_path=cfg.run_dir.driver_log) from e


def run_pipeline(cfg: JobConfig) -> PipelineResult:
    """Raises RunLocked when another live driver holds the run directory."""
    with run_lock(cfg.run_dir.root):  # one driver per run directory
        return _run_pipeline(cfg)


def _run_pipeline(cfg: JobConfig) -> PipelineResult:
    quiet_driver(cfg.run_dir.driver_log, placement(cfg).use_gpu)
    family = get_family(cfg.model.family)
    job = cfg  # as submitted (model.path not yet resolved): what same_job records and compares
    for stage in job.training_stages:  # before any work: a changed job never reuses another's stage
        if stage_done(job, stage):
            check_stage(job, stage)
    cfg = materialise_model(cfg, family)
    data = prepare_data(cfg, family)
    connect_ray(cfg, placement(cfg))
    report_path = cfg.run_dir.report
    report: dict[str, Any] = read_json(report_path) or {}  # damaged: its entries are re-derived

    def save() -> None:
        write_json_atomic(report_path, report)

    model_dir = Path(cfg.model.path)
    if cfg.evaluate and "base" not in report:
        report["base"] = {"eval": evaluate_model(cfg, data, model_dir, "base", 0), "wall_seconds": 0.0}
        save()
    for i, stage in enumerate(cfg.training_stages):
        if stage_done(cfg, stage):
            log.info("pipeline: %s already complete, skipping", stage)
        else:
            record_stage(job, stage)
            t0 = time.perf_counter()
            stage_cfg = replace(cfg, model=replace(cfg.model, path=str(model_dir)))
            try:
                run_stage(stage_cfg, stage, extra={"data": data.to_json()})
            except Exception as e:  # Ray wraps worker errors; StageFailed names the worker's own
                raise StageFailed(stage, e, cfg.run_dir, max_failures=cfg.run.max_failures) from e
            status = stage_status(cfg.run_dir, stage)
            if status is not None and not status["complete"]:
                return PipelineResult(report, stopped=stage)
            if not stage_done(cfg, stage):
                raise StageFailed(stage, RuntimeError("ended without a final model"), cfg.run_dir)
            wall = time.perf_counter() - t0
            report.setdefault(stage, {})["wall_seconds"] = wall
            save()
            log.info("%s: done in %s, steps %s -> %s, checkpoints in %s, model %s", stage, fmt_duration(wall),
                     status["start_step"], status["global_step"], cfg.run_dir.ray_stage(stage), cfg.run_dir.final_model(stage))
        model_dir = cfg.run_dir.final_model(stage)
        entry = report.setdefault(stage, {})
        if cfg.evaluate and "eval" not in entry:
            entry["eval"] = evaluate_model(cfg, data, model_dir, stage, i + 1)
        entry.update(reward_summary(cfg.run_dir, stage))
        entry.update(heldout_curve(cfg.run_dir, stage))
        entry["model"] = str(model_dir)
        save()
    return PipelineResult(report)
