"""A training worker's output: into ``logs/<stage>/rank<k>.log``, and rank 0's progress records.

Redirecting the file descriptors (not only ``sys.stdout``) also catches what C extensions,
DeepSpeed and tqdm write. With ``VLM_TRAIN_LOG_LEVEL=debug`` nothing is redirected, and Ray
streams the worker's output to the driver as usual.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from transformers import TrainerCallback

from vlm_train.launch.console import verbose


def redirect_worker_output(path: Path) -> None:
    """Point this process's stdout/stderr, Python logging and warnings at ``path``."""
    if verbose():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the worker process
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)
    sys.stdout = sys.stderr = f
    root = logging.getLogger()
    fh = logging.StreamHandler(f)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [fh]
    root.setLevel(logging.INFO)
    for name in ("vlm_train", "ray", "transformers", "deepspeed", "datasets", "torch"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.captureWarnings(True)
    ignore_dependency_deprecations()


# FutureWarnings raised inside our dependencies about their use of one another, from call sites
# we do not own and with nothing to change in what we pass; matched by message and category only.
DEPENDENCY_DEPRECATIONS = (
    # DeepSpeed's ZeRO collectives, deprecated by torch 2.14.
    r"`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
    # TRL reads model.is_gradient_checkpointing around every generation (GRPO rollouts, held-out
    # evaluation); transformers 5 renamed it is_activation_checkpointing.
    r"`is_gradient_checkpointing` is deprecated and will be removed in v6",
)


def ignore_dependency_deprecations() -> None:
    for message in DEPENDENCY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


class ProgressCallback(TrainerCallback):
    """Rank 0 appends one JSON line per logged step: what the driver prints as progress."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._start: int | None = None
        self._t0 = 0.0
        self.batch_per_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start, self._t0 = state.global_step, time.perf_counter()
        # Samples per optimizer step, all ranks (GRPO: completions).
        self.batch_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        start = self._start or 0
        entry = {"step": state.global_step, "max_steps": state.max_steps, "start_step": start,
                 "samples": (state.global_step - start) * self.batch_per_step,
                 "seconds": time.perf_counter() - self._t0, "time": time.time()}
        for key in ("loss", "reward"):
            if key in logs:
                entry[key] = logs[key]
        if "loss" not in entry and "reward" not in entry:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
