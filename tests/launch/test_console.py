"""The console's progress line: in place on a terminal, every N steps elsewhere; root causes."""

from __future__ import annotations

import io
import json

from vlm_train.launch.console import ProgressPrinter, progress_line, root_cause


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


def test_root_cause_unwraps_worker_failures():
    class WorkerGroupError(RuntimeError):  # the shape of ray.train.WorkerGroupError
        def __init__(self, failures):
            super().__init__("Training failed due to worker errors")
            self.worker_failures = failures

    cause = ValueError("bad sample 7")
    wrapped = RuntimeError("task failed")
    wrapped.cause = cause  # RayTaskError keeps the user's exception as .cause
    assert root_cause(WorkerGroupError({1: RuntimeError("other"), 0: wrapped})) is cause
