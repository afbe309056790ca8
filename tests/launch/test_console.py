"""The console's progress line: in place on a terminal, every N steps elsewhere; root causes;
library output on the driver and the workers routed away from it."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest

from vlm_train.launch.console import LEVEL_ENV, ProgressPrinter, progress_line, quiet_driver, root_cause, unwrap
from vlm_train.run_dir import RunDir


def entry(step: int, total: int = 20, **kw):
    return {"step": step, "max_steps": total, "start_step": 0, "samples": step * 8, "loss": 2.0 / step, **kw}


def test_progress_line_fields():
    line = progress_line("sft", entry(5), elapsed=10.0)
    assert line.split()[:2] == ["sft", "5/20"]
    assert "loss 0.4000" in line and "4.0 samples/s" in line
    assert "elapsed 00:10" in line and "eta 00:30" in line  # 2 s per step, 15 steps left
    grpo = progress_line("grpo", {"step": 3, "max_steps": 4, "start_step": 2, "samples": 16, "reward": 0.25}, 4.0)
    assert "reward 0.2500" in grpo and "loss" not in grpo and "eta 00:04" in grpo
    # rank 0's own training time wins over the driver's clock (which includes worker start-up)
    assert "eta 00:15" in progress_line("sft", entry(5, seconds=5.0), elapsed=60.0)


def test_terminal_rewrites_one_line(tmp_path):
    out = io.StringIO()
    p = ProgressPrinter("sft", tmp_path / "progress.jsonl", out=out, tty=True)
    for s in range(1, 21):
        p.feed(entry(s), float(s))
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 20 and text.endswith(progress_line("sft", entry(20), 20.0))


def test_non_terminal_prints_every_n_steps_and_the_last(tmp_path):
    path = tmp_path / "progress.jsonl"
    out = io.StringIO()
    with ProgressPrinter("sft", path, out=out, tty=False, every=5):
        with path.open("a") as f:  # what rank 0's ProgressCallback appends
            for s in range(1, 13):
                f.write(json.dumps(entry(s, total=12)) + "\n")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [ln.split()[1] for ln in lines] == ["1/12", "6/12", "11/12", "12/12"]


class WorkerGroupError(RuntimeError):  # the shape of ray.train.WorkerGroupError
    def __init__(self, failures):
        super().__init__("Training failed due to worker errors")
        self.worker_failures = failures


def test_root_cause_unwraps_worker_failures():
    cause = ValueError("bad sample 7")
    wrapped = RuntimeError("task failed")
    wrapped.cause = cause  # RayTaskError keeps the user's exception as .cause
    assert root_cause(WorkerGroupError({1: RuntimeError("other"), 0: wrapped})) is cause
    assert unwrap(WorkerGroupError({3: cause, 1: wrapped})) == (1, cause)
    assert unwrap(cause) == (None, cause)


def test_a_dead_worker_is_blamed_over_the_survivors_collective_error(tmp_path):
    """Rank 1 SIGKILLed: Ray reports its death, and rank 0 fails in its next allreduce. The
    error names rank 1 (the cause), not rank 0 (the lower rank, a consequence)."""
    from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError
    from ray.train.v2.api.exceptions import WorkerGroupError as RayWorkerGroupError

    from vlm_train.launch.pipeline import StageFailed

    collective = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")
    dead = ActorDiedError()
    assert unwrap(RayWorkerGroupError("2 workers failed", {0: collective, 1: dead})) == (1, dead)
    assert unwrap(RayWorkerGroupError("", {0: collective, 3: RayActorError(), 2: collective}))[0] == 3
    # What Ray Train hands over for a SIGKILLed worker: its failed health check, the death inside.
    check = WorkerHealthCheckFailedError("A worker health check failed.", ActorDiedError())
    assert unwrap(RayWorkerGroupError("", {0: collective, 1: check})) == (1, check)
    hung = WorkerHealthCheckFailedError("A worker health check failed.", GetTimeoutError("timed out"))
    assert unwrap(RayWorkerGroupError("", {0: collective, 1: hung}))[0] == 0  # not a death
    # Without a death, the lowest failed rank, as before; a death inside a wrapper counts.
    assert unwrap(WorkerGroupError({2: collective, 1: ValueError("bad sample 7")}))[0] == 1
    wrapped = RuntimeError("task failed")
    wrapped.cause = RuntimeError("The actor died unexpectedly before finishing this task.")
    assert unwrap(WorkerGroupError({0: collective, 1: wrapped}))[0] == 1
    run = RunDir(tmp_path / "run")
    msg = str(StageFailed("sft", RayWorkerGroupError("", {0: collective, 1: dead}), run, max_failures=2))
    assert msg.startswith("sft failed on rank 1 after 2 restarts (run.max_failures=2): ActorDiedError: The actor died")
    assert msg.splitlines()[-1] == f"full log: {run.worker_log('sft', 1)}"


def test_stage_failure_names_the_worker_exception_and_its_log(tmp_path):
    from vlm_train.launch.pipeline import StageFailed

    run = RunDir(tmp_path / "run")
    msg = str(StageFailed("sft", WorkerGroupError({1: ValueError("bad sample 7")}), run))
    assert msg.splitlines() == ["sft failed on rank 1: ValueError: bad sample 7", f"full log: {run.logs / 'sft' / 'rank1.log'}"]
    assert "Training failed due to worker errors" not in msg  # Ray's wrapper is not the cause
    driver_side = str(StageFailed("sft", RuntimeError("ended without a final model"), run)).splitlines()
    assert driver_side[0] == "sft failed: RuntimeError: ended without a final model"
    assert str(run.driver_log) in driver_side[1] and str(run.logs / "sft") in driver_side[1]


@pytest.fixture
def restore_logging():
    """quiet_driver rewires process-wide logging and progress bars: put them back afterwards."""
    import transformers.utils.logging as hf_logging

    names = ("", "ray", "ray.train", "transformers", "datasets", "huggingface_hub", "torch", "py.warnings")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    yield
    for n, (handlers, propagate) in saved.items():
        logging.getLogger(n).handlers[:], logging.getLogger(n).propagate = handlers, propagate
    logging.captureWarnings(False)
    hf_logging.enable_progress_bar()
    import datasets.utils

    datasets.utils.enable_progress_bars()


def test_quiet_driver_routes_library_output_to_the_driver_log(tmp_path, monkeypatch, capfd, restore_logging):
    import datasets.utils
    import transformers.utils.logging as hf_logging

    monkeypatch.delenv(LEVEL_ENV, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")  # setdefault inside; keeps this process's env as it was
    log = tmp_path / "logs" / "driver.log"
    quiet_driver(log, use_gpu=True)
    # ray.init(configure_logging=False) empties the "ray" logger's handlers: what Ray logs then
    # (its token-auth notice) must still reach the file, not Python's last-resort stderr.
    logging.getLogger("ray").handlers.clear()
    logging.getLogger("ray._private.authentication.authentication_token_setup").warning("Token authentication is enabled")
    hf_logging.get_logger("transformers.modeling_utils").warning("a transformers warning")
    # The bars the tiny model's save and a model load draw, tqdm already imported.
    for _ in hf_logging.tqdm(range(3), desc="Writing model shards"):
        pass
    assert not hf_logging.is_progress_bar_enabled() and datasets.utils.are_progress_bars_disabled()
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    text = log.read_text()
    assert "Token authentication is enabled" in text and "a transformers warning" in text


def test_verbose_keeps_library_output_on_the_console(tmp_path, monkeypatch, restore_logging):
    import transformers.utils.logging as hf_logging

    hf_logging.enable_progress_bar()
    monkeypatch.setenv(LEVEL_ENV, "debug")
    quiet_driver(tmp_path / "driver.log", use_gpu=True)
    assert hf_logging.is_progress_bar_enabled() and not (tmp_path / "driver.log").exists()


def test_worker_drops_only_known_dependency_deprecations():
    import torch
    from transformers import PreTrainedModel

    from vlm_train.train.worker_logs import ignore_dependency_deprecations

    def future_warnings(fn) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            fn()
            try:  # what DeepSpeed's ZeRO calls; no process group here: torch warns, then fails
                torch.distributed.all_gather_into_tensor(torch.zeros(2), torch.zeros(1))
            except (RuntimeError, ValueError):
                pass
            try:  # what TRL reads around generation (on a plain module: warns, then fails)
                PreTrainedModel.is_gradient_checkpointing.fget(torch.nn.Linear(1, 1))
            except AttributeError:
                pass
            warnings.warn("`torch.distributed.something_else` is deprecated", FutureWarning, stacklevel=1)
        return [str(w.message) for w in seen if issubclass(w.category, FutureWarning)]

    unfiltered = future_warnings(lambda: None)
    # the libraries still warn as the filters expect
    assert [m.split('`')[1] for m in unfiltered] == ["torch.distributed.all_gather_into_tensor", "is_gradient_checkpointing",
                                                    "torch.distributed.something_else"], unfiltered
    assert future_warnings(ignore_dependency_deprecations) == ["`torch.distributed.something_else` is deprecated"]


def test_evaluation_failure_names_the_task_exception_and_the_driver_log(tmp_path, monkeypatch):
    # An evaluation runs as a Ray task: ray.get raises RayTaskError around the task's exception.
    # The console must show the task's own exception and where its output went, not Ray's wrapper.
    from ray.exceptions import RayTaskError

    from vlm_train.launch import pipeline
    from vlm_train.launch.pipeline import StageFailed

    def failing(*a, **k):
        raise RayTaskError("evaluate_checkpoint", "Traceback ...", ValueError("image not found: a.png")).as_instanceof_cause()

    monkeypatch.setattr(pipeline, "evaluate_remote", failing)
    cfg = type("Cfg", (), {"run_dir": RunDir(tmp_path / "run")})()
    with pytest.raises(StageFailed) as e:
        pipeline.evaluate_model(cfg, None, tmp_path, "sft", 1)
    assert str(e.value).splitlines() == ["evaluation of sft failed: ValueError: image not found: a.png",
                                         f"full log: {cfg.run_dir.driver_log}"]
