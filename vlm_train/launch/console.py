"""What the user reads: our own lines on the console, everything else in ``<run dir>/logs/``.

Quiet by default: the ``vlm_train`` logger prints at INFO, libraries' warnings and Ray's own
driver-side messages go to ``logs/driver.log``, and each training worker's output goes to
``logs/<stage>/rank<k>.log`` (vlm_train/train/worker_logs.py). ``--verbose`` or
``VLM_TRAIN_LOG_LEVEL=debug`` brings everything back on the console.

Per stage the driver prints one line when it starts, a progress line (rewritten in place with
``\\r`` on a terminal, a new line every ``every`` steps otherwise: log files, ``ray job submit``),
and one line when it ends.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

LEVEL_ENV = "VLM_TRAIN_LOG_LEVEL"
log = logging.getLogger("vlm_train")


def verbose() -> bool:
    return os.environ.get(LEVEL_ENV, "").lower() == "debug"


def setup_console(is_verbose: bool = False) -> None:
    """Our logger on stderr with a short format; libraries at WARNING (or all of it, verbose)."""
    if is_verbose:
        os.environ[LEVEL_ENV] = "debug"  # workers inherit it through the worker env
    is_verbose = verbose()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s" if is_verbose else "%(message)s"))
    ours = logging.getLogger("vlm_train")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.DEBUG if is_verbose else logging.INFO)
    ours.propagate = False
    if is_verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def quiet_driver(path: Path, use_gpu: bool) -> None:
    """Send library warnings and Ray's driver-side log records to ``path`` (not verbose).

    On a CPU pool DeepSpeed's accelerator is named up front: else every process probes for
    one and warns that it found none.
    """
    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if verbose():
        return
    # tqdm reads TQDM_DISABLE when it is imported: this reaches the processes started from here.
    os.environ.setdefault("TQDM_DISABLE", "1")
    # Each of these installs its own stderr handler when imported (transformers on its first
    # logger): import them now so the handlers below replace theirs rather than sit beside them.
    import datasets.utils
    import huggingface_hub.utils.logging  # noqa: F401
    import ray  # noqa: F401
    import torch  # noqa: F401
    import transformers.utils.logging as hf_logging

    hf_logging.get_logger()
    # Already imported, so TQDM_DISABLE is too late for them: the tiny model's "Writing model
    # shards", "Loading weights", datasets' map bars. The libraries' own switches still work.
    hf_logging.disable_progress_bar()  # transformers' and huggingface_hub's
    datasets.utils.disable_progress_bars()

    path.parent.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(path)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.captureWarnings(True)
    for name in ("py.warnings", "ray.train", "ray.data", "transformers", "datasets", "huggingface_hub", "deepspeed", "torch"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [fh]
        lg.propagate = False
    # ray.init(configure_logging=False) empties the "ray" logger's handlers, and a logger with
    # none (propagating nowhere) falls back to Python's last-resort stderr handler: that is how
    # the token-auth notice reached the console. Through the root logger it lands in the file.
    ray_logger = logging.getLogger("ray")
    ray_logger.handlers[:] = []
    ray_logger.propagate = True
    logging.getLogger().handlers[:] = [fh]  # any other library's records (else Python's last-resort stderr)


def ray_init_kwargs() -> dict[str, Any]:
    """What ``ray.init`` gets for the console: worker output streamed only when verbose."""
    if verbose():
        return {"log_to_driver": True}
    return {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}


def fmt_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def progress_line(stage: str, entry: dict[str, Any], elapsed: float) -> str:
    """``sft  6/8  loss 1.234  5.2 samples/s  elapsed 00:12  eta 00:04`` from one progress record.

    ``entry``: step, max_steps, samples (seen so far this attempt), start_step, and the
    last logged loss and/or reward.
    """
    step, total = int(entry["step"]), int(entry["max_steps"])
    parts = [f"{stage:<5}", f"{step}/{total}"]
    for key in ("loss", "reward"):
        if isinstance(entry.get(key), (int, float)):
            parts.append(f"{key} {entry[key]:.4f}")
    done = step - int(entry.get("start_step", 0))
    elapsed = float(entry.get("seconds", elapsed))  # rank 0's training time (not worker start-up)
    if elapsed > 0 and done > 0:
        parts.append(f"{entry.get('samples', 0) / elapsed:.1f} samples/s")
        parts.append(f"elapsed {fmt_duration(elapsed)}")
        parts.append(f"eta {fmt_duration(elapsed / done * (total - step))}")
    return "  ".join(parts)


class ProgressPrinter:
    """Prints a stage's progress records as rank 0 appends them to its progress file.

    ``tty``: rewrite one line in place; otherwise print a line every ``every`` steps and the last.
    """

    def __init__(self, stage: str, path: Path, out: TextIO | None = None, tty: bool | None = None, every: int = 10):
        self.stage, self.path = stage, Path(path)
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.every = every
        self._offset = 0
        self._t0 = time.perf_counter()
        self._printed = 0
        self._last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def feed(self, entry: dict[str, Any], elapsed: float) -> None:
        line = progress_line(self.stage, entry, elapsed)
        step, total = int(entry["step"]), int(entry["max_steps"])
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            self._printed += 1
        elif step == total or step - int((self._last or {}).get("printed_step", 0)) >= self.every or self._last is None:
            self.out.write(line + "\n")
            entry = {**entry, "printed_step": step}
            self._printed += 1
        else:
            entry = {**entry, "printed_step": (self._last or {}).get("printed_step", 0)}
        self._last = entry
        self.out.flush()

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open() as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        for line in complete.splitlines():
            if line.strip():
                self.feed(json.loads(line), time.perf_counter() - self._t0)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()

    def __enter__(self) -> ProgressPrinter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")  # this attempt's records only
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
        if self.tty and self._printed:
            self.out.write("\n")
            self.out.flush()


def root_cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside Ray Train's wrappers (WorkerGroupError, RayTaskError)."""
    return unwrap(exc)[1]


# How Ray reports a worker process that is gone (SIGKILL, the OOM killer, a lost node), as
# opposed to an exception the worker raised itself. Ray Train usually hands it over inside a
# WorkerHealthCheckFailedError (its ``health_check_failure``; its text carries the death's).
_DEATHS = frozenset({"RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError"})
_DEATH_TEXT = "The actor died unexpectedly"


def died(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says its worker died rather than failed."""
    seen: set[int] = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        if _DEATHS & {c.__name__ for c in type(exc).__mro__} or _DEATH_TEXT in str(exc):
            return True
        exc = getattr(exc, "health_check_failure", None) or getattr(exc, "cause", None) or exc.__cause__
    return False


def failed_rank(failures: dict[int, BaseException]) -> int:
    """The rank to blame among a worker group's failures: a worker that died, else the lowest.

    When one worker dies, the others fail too, in their next collective (a gloo/NCCL
    connection error): those are its consequence; the dead worker is the cause.
    """
    dead = [r for r in sorted(failures) if died(failures[r])]
    return dead[0] if dead else min(failures)


def unwrap(exc: BaseException) -> tuple[int | None, BaseException]:
    """(rank of the failed worker, or None when no worker is named; its own exception)."""
    rank, seen = None, set()
    while id(exc) not in seen:
        seen.add(id(exc))
        failures = getattr(exc, "worker_failures", None)
        if failures:
            rank = failed_rank(failures)
            exc = failures[rank]
            continue
        inner = getattr(exc, "cause", None) or getattr(exc, "controller_failure", None) or exc.__cause__
        if isinstance(inner, BaseException):
            exc = inner
            continue
        break
    return rank, exc
