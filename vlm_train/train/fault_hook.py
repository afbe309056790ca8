"""TEST HOOK, not a user setting: SIGKILL a training worker at a chosen step or save, or hold
it there while the test does the killing (of its whole node, say).

Off unless the driver's environment sets ``VLM_TRAIN_TEST_FAULTS`` (the launcher forwards it to
the workers, vlm_train.launch.ray_env); the fault tests and benchmarks/faults.py set it. The
kill is a real ``SIGKILL`` of the worker process: no Python cleanup, no exception for Ray to
report, the way an OOM killer or a lost machine ends a worker.

Grammar: faults separated by commas, each ``PHASE@STEP[:rank=R][:times=N]``:

    step@3            SIGKILL rank 1 during step 3 (after backward, before the optimizer step)
    save@4:rank=0     SIGKILL rank 0 while checkpoint 4 is being written to Ray storage
    step@3:times=2    the same fault in the first 2 attempts that reach it (default 1)
    hold@4:rank=0     rank 0 stops during step 4 (where step@4 would kill it) and writes
                      ``work/<stage>/faults/<i>.hold@4.held`` (its pid and node); it goes on
                      after HOLD_S, unless the test has ended it (the other ranks wait for it
                      in their next collective meanwhile)

A fault fires in at most ``times`` attempts: a count file per fault under
``work/<stage>/faults/`` survives the restart that the kill causes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from vlm_train.launch.ray_env import FAULTS_ENV as ENV

PHASES = ("step", "save", "hold")
SAVE_WAIT_S = 60.0
HOLD_S = 300.0


@dataclass(frozen=True)
class Fault:
    phase: str
    step: int
    rank: int = 1
    times: int = 1


def parse_faults(spec: str) -> list[Fault]:
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        head, *opts = item.split(":")
        phase, _, step = head.partition("@")
        kw: dict[str, int] = {}
        try:
            for o in opts:
                k, _, v = o.partition("=")
                if k not in ("rank", "times"):
                    raise ValueError(f"unknown option {k!r}")
                kw[k] = int(v)
            if phase not in PHASES:
                raise ValueError(f"phase must be one of {', '.join(PHASES)}")
            faults.append(Fault(phase, int(step), **kw))
        except ValueError as e:
            raise ValueError(f"{ENV}: bad fault {item!r} ({e}); expected PHASE@STEP[:rank=R][:times=N]") from None
    return faults


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wait(seconds: float) -> None:
    time.sleep(seconds)


class FaultHookCallback(TrainerCallback):
    """Fires the faults of ``VLM_TRAIN_TEST_FAULTS`` meant for this rank. Goes before the
    Ray checkpoint callback, whose ``on_save`` blocks in ``ray.train.report``."""

    def __init__(self, faults: list[Fault], rank: int, counts_dir: Path, storage: Path):
        self.faults = [(i, f) for i, f in enumerate(faults) if f.rank == rank]
        self.counts_dir, self.storage = Path(counts_dir), Path(storage)

    def _arm(self, phase: str, step: int) -> int | None:
        """The fault's index (and counted) when a fault of ``phase`` at ``step`` fires in this
        attempt, else None."""
        for i, f in self.faults:
            if f.phase != phase or f.step != step:
                continue
            count = self.counts_dir / f"{i}.{f.phase}@{f.step}.count"
            done = int(count.read_text()) if count.is_file() else 0
            if done >= f.times:
                continue
            self.counts_dir.mkdir(parents=True, exist_ok=True)
            count.write_text(str(done + 1))
            return i
        return None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        # global_step counts finished steps: this is step global_step + 1, its gradients reduced.
        if self._arm("step", state.global_step + 1) is not None:
            _kill()
        i = self._arm("hold", state.global_step + 1)
        if i is not None:
            self._hold(self.counts_dir / f"{i}.hold@{state.global_step + 1}.held")

    def _hold(self, marker: Path) -> None:
        """Say where this worker is (the test kills its node, or anything else), then wait."""
        import json

        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        tmp = marker.with_name(f".{marker.name}.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "node_id": node, "time": time.time()}))
        tmp.replace(marker)
        _wait(HOLD_S)

    def on_save(self, args, state, control, **kwargs):
        if self._arm("save", state.global_step) is None:
            return
        # Die once the checkpoint's upload to Ray storage has begun (ray.train.report, next
        # callback): the storage folder then holds part of it and Ray never registers it.
        # The folder is checkpoint-NNNNNN, or checkpoint-NNNNNN.K when that name is taken.
        pattern = f"checkpoint-{state.global_step:06d}*"
        before = set(self.storage.glob(pattern))

        def watch() -> None:
            end = time.monotonic() + SAVE_WAIT_S
            while not set(self.storage.glob(pattern)) - before and time.monotonic() < end:
                time.sleep(0.0005)
            _kill()

        threading.Thread(target=watch, daemon=True).start()


def fault_hook(rank: int, counts_dir: Path, storage: Path) -> list[TrainerCallback]:
    """The hook's callback when ``VLM_TRAIN_TEST_FAULTS`` names faults, else nothing."""
    spec = os.environ.get(ENV, "").strip()
    return [FaultHookCallback(parse_faults(spec), rank, counts_dir, storage)] if spec else []
