"""The part of every stage's worker loop after the trainer is built: resume, train, finish."""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.runstate import write_json_atomic
from vlm_train.train.callbacks import RayCheckpointCallback, StopAtStepCallback
from vlm_train.train.final import save_final
from vlm_train.train.resume import choose_checkpoint, install_weight_resume
from vlm_train.train.trust import check_trusted
from vlm_train.train.worker import WorkerInfo, barrier

log = logging.getLogger("vlm_train")


def record_start(cfg: JobConfig, info: WorkerInfo, stage: str, step: int,
                 latest: str | None = None, chosen: str | None = None) -> None:
    """Append where each attempt (first run, restart, resubmission) started: the resume record.

    ``latest``: the checkpoint Ray handed over; ``chosen``: the one resumed (they differ when
    the latest was damaged). ``time`` (unix) places the attempt among the progress records.
    """
    if info.is_main:
        path = cfg.run_dir.stage_resumes(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"start_step": step, "time": time.time(), "latest": latest, "chosen": chosen}
        with path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def train_and_finish(trainer: Any, cfg: JobConfig, info: WorkerInfo, stage: str,
                     stopper: StopAtStepCallback, family: Any, processor: Any, guard: Any = None,
                     marks: dict[str, float] | None = None) -> None:
    """Train from the latest Ray checkpoint (or step 0), save the final model, write the status.

    A worker-group restart and a resubmitted job (same run name and storage) both resume from
    ``ray.train.get_checkpoint()`` or a newer whole checkpoint in the stage's storage
    (``choose_checkpoint``). ``marks``: the worker loop's earlier wall-clock marks, kept with these.
    """
    import ray.train

    # Wall-clock marks (unix time) of the stage's phases for benchmarks/step_overhead.py.
    timings = {**(marks or {}), "trainer_built": time.time()}
    install_weight_resume(trainer)
    ckpt = ray.train.get_checkpoint()
    with ckpt.as_directory() if ckpt is not None else nullcontext(None) as latest:
        # A truncated or half-written checkpoint is passed over for the newest whole one.
        d = choose_checkpoint(latest, cfg.run_dir.ray_stage(stage))
        latest_name = Path(latest).name if latest is not None else None
        if d is None:
            if latest is not None:
                log.warning("no whole checkpoint of %s to resume: starting from step 0", stage)
            start = 0
            record_start(cfg, info, stage, 0, latest=latest_name)
            result = trainer.train()
        else:
            check_trusted(d, cfg.run_dir.root)
            for cb in trainer.callback_handler.callbacks:  # pruning spares the one resumed from
                if isinstance(cb, RayCheckpointCallback):
                    cb.resumed = Path(d)
            start = int(json.loads((Path(d) / "trainer_state.json").read_text())["global_step"])
            log.info("resuming %s from checkpoint at step %d (%s)", stage, start, d)
            record_start(cfg, info, stage, start, latest=latest_name, chosen=Path(d).name)
            result = trainer.train(resume_from_checkpoint=str(d))
    timings["trained"] = time.time()
    # A run stopped early (preemption aid) leaves no final model: it is not finished.
    if not stopper.stopped:
        save_final(trainer, cfg, family, processor, stage=stage, is_main=info.is_main)
    timings["final_saved"] = time.time()
    if info.is_main:
        status = {
            "stage": stage,
            "start_step": start,
            "global_step": trainer.state.global_step,
            "max_steps": trainer.state.max_steps,
            "complete": not stopper.stopped,
            "train_loss": result.training_loss,
            "nonfinite_skipped": guard.skipped if guard is not None else 0,
            "truncated_dropped": guard.dropped if guard is not None else 0,
            "log_history": trainer.state.log_history,
            "timings": timings,
        }
        write_json_atomic(cfg.run_dir.stage_status(stage), status)
    barrier()
