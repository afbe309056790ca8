"""Trainer callbacks shared by SFT and GRPO: Ray checkpoint reporting, throughput, fault injection."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from vlm_train.train.resume import write_manifest


class RayCheckpointCallback(TrainerCallback):
    """Report every HF checkpoint to Ray Train as it is written.

    Each rank reports its own (rank-local) checkpoint folder under the same name; Ray merges
    them into one storage directory, so ZeRO shards written by every rank end up together
    and a restarted or resubmitted run resumes from the merged folder. ``ray.train.report``
    is a barrier: every rank calls it once per save.

    A save never reuses a storage folder: where ``checkpoint-NNNNNN`` exists (a run resumed
    from an older checkpoint than a damaged or half-written one saves that step again), the
    new one is ``checkpoint-NNNNNN.K``. Reused, its folder would mix stale files into the new
    checkpoint, and Ray would hold two entries for one path: evicting the old one deletes the
    new one. Ray uses rank 0's name for every rank (it broadcasts it), and rank 0 looks before
    any rank of this save has uploaded.

    After each save rank 0 applies ``run.checkpoints_to_keep`` to every checkpoint folder of
    the stage, the ones Ray never registered too (vlm_train/train/prune.py); ``resumed``
    (set by the loop) is the one this attempt resumed from, never deleted.
    """

    def __init__(self, storage: Path | None = None, keep: int | None = None):
        self.storage = Path(storage) if storage is not None else None
        self.keep = keep
        self.resumed: Path | None = None

    def dir_name(self, step: int) -> str:
        name = f"checkpoint-{step:06d}"
        if self.storage is None or not (self.storage / name).exists():
            return name
        k = 1
        while (self.storage / f"{name}.{k}").exists():
            k += 1
        return f"{name}.{k}"

    def on_save(self, args, state, control, **kwargs):
        import ray.train

        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metrics = {"step": state.global_step, "epoch": state.epoch or 0.0}
        for entry in reversed(state.log_history):
            if "loss" in entry:
                metrics["loss"] = entry["loss"]
                break
        # Written last: a folder without it (a save killed half-way) is never resumed from.
        write_manifest(ckpt, args.process_index, args.world_size)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(str(ckpt)),
            checkpoint_dir_name=self.dir_name(state.global_step),
        )
        # The persisted copy lives in Ray storage now; keep local disk small.
        shutil.rmtree(ckpt, ignore_errors=True)
        # Every rank has passed this save's name barrier, so none still reads the checkpoint it
        # resumed from; others may still be uploading this save, which is newer than anything pruned.
        if self.storage is not None and args.process_index == 0:
            from vlm_train.train.prune import prune_checkpoints

            prune_checkpoints(self.storage, self.keep, protect=[self.resumed] if self.resumed else [])


class ThroughputCallback(TrainerCallback):
    """Adds ``tokens_per_second`` (all ranks, non-padding input tokens) to every log entry.

    Inserted first in the callback list so the value is in ``logs`` before TensorBoard sees it.
    """

    def __init__(self) -> None:
        self._t: float | None = None
        self._tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t, self._tokens = time.perf_counter(), state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or self._t is None or "loss" not in logs:
            return
        now = time.perf_counter()
        dt = now - self._t
        if dt > 0:
            logs["tokens_per_second"] = (state.num_input_tokens_seen - self._tokens) / dt
        self._t, self._tokens = now, state.num_input_tokens_seen


class FaultInjectionCallback(TrainerCallback):
    """Testing aid: crash rank 0 once at ``fail_at_step`` (a marker file makes it once).

    Ray Train then tears the whole worker group down and restarts it from the last
    reported checkpoint, which is the path a real worker loss takes.
    """

    def __init__(self, fail_at_step: int | None, marker: Path):
        self.fail_at_step, self.marker = fail_at_step, marker

    def on_step_end(self, args, state, control, **kwargs):
        if int(os.environ.get("RANK", "0")) != 0:
            return
        if self.fail_at_step is not None and state.global_step == self.fail_at_step and not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text(str(state.global_step))
            raise RuntimeError(f"injected failure at step {state.global_step} (run.fail_at_step)")


class StopAtStepCallback(TrainerCallback):
    """Testing aid: stop training after ``stop_at_step`` (saved first), as a preempted job would."""

    def __init__(self, stop_at_step: int | None):
        self.stop_at_step = stop_at_step
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_at_step is not None and state.global_step >= self.stop_at_step:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True


def stage_callbacks(cfg, stage: str) -> tuple[list[TrainerCallback], StopAtStepCallback]:
    """The callbacks every stage's trainer gets, and the stopper (the loop asks it whether the
    run stopped early). ThroughputCallback goes first in the handler: see its docstring."""
    from vlm_train.train.fault_hook import fault_hook
    from vlm_train.train.worker_logs import ProgressCallback

    stopper = StopAtStepCallback(cfg.run.stop_at_step)
    hook = fault_hook(int(os.environ.get("RANK", "0")), cfg.run_dir.work(stage) / "faults", cfg.run_dir.ray_stage(stage))
    return [*hook, RayCheckpointCallback(cfg.run_dir.ray_stage(stage), cfg.run.checkpoints_to_keep), FaultInjectionCallback(cfg.run.fail_at_step, cfg.run_dir.failure_marker(stage)), stopper,
            ProgressCallback(cfg.run_dir.progress(stage))], stopper
