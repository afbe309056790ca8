"""The fault-injection test hook: its grammar, once-per-attempt counting, and the rows the
fault tests compute from a run's records (the SIGKILLs themselves: tests/launch/test_faults.py)."""

from __future__ import annotations

import json

import pytest

from vlm_train.run_dir import RunDir
from vlm_train.testing.faults import attempts, fault_row
from vlm_train.train.fault_hook import Fault, FaultHookCallback, fault_hook, parse_faults


def test_grammar_and_errors():
    assert parse_faults("step@3, save@4:rank=0,step@5:times=2,hold@4:rank=0") == [
        Fault("step", 3), Fault("save", 4, rank=0), Fault("step", 5, times=2), Fault("hold", 4, rank=0)]
    for bad, why in [("boom@3", "phase must be one of step, save, hold"), ("step@x", "invalid literal"),
                     ("step@3:when=1", "unknown option 'when'")]:
        with pytest.raises(ValueError, match=rf"VLM_TRAIN_TEST_FAULTS: bad fault '{bad}' \(.*{why}"):
            parse_faults(bad)


def test_off_unless_set_and_counted_per_attempt(tmp_path, monkeypatch):
    monkeypatch.delenv("VLM_TRAIN_TEST_FAULTS", raising=False)
    assert fault_hook(0, tmp_path, tmp_path) == []
    hook = FaultHookCallback(parse_faults("step@3:times=2,step@4:rank=0"), rank=1, counts_dir=tmp_path, storage=tmp_path)
    assert hook._arm("step", 4) is None  # rank 0's fault
    # Each attempt that reaches step 3 arms it once (the count file survives the kill), twice in all.
    assert [hook._arm("step", 3) is not None for _ in range(3)] == [True, True, False]


def test_hold_says_where_the_worker_is_then_waits_once(tmp_path, monkeypatch):
    import os
    import types

    from vlm_train.train import fault_hook as fh

    slept = []
    monkeypatch.setattr(fh, "_wait", slept.append)
    hook = FaultHookCallback(parse_faults("hold@4:rank=0"), rank=0, counts_dir=tmp_path, storage=tmp_path)
    state = types.SimpleNamespace(global_step=3)
    hook.on_pre_optimizer_step(None, types.SimpleNamespace(global_step=2), None)  # step 3: not held
    assert slept == [] and not list(tmp_path.glob("*.held"))
    hook.on_pre_optimizer_step(None, state, None)
    assert slept == [fh.HOLD_S]
    held = json.loads((tmp_path / "0.hold@4.held").read_text())
    assert held["pid"] == os.getpid()
    hook.on_pre_optimizer_step(None, state, None)  # the restarted attempt goes through step 4
    assert slept == [fh.HOLD_S]


def test_rows_from_records(tmp_path):
    run = RunDir(tmp_path)
    run.stage_resumes("sft").parent.mkdir(parents=True)
    run.stage_resumes("sft").write_text("".join(json.dumps(r) + "\n" for r in [
        {"start_step": 0, "time": 10.0, "latest": None, "chosen": None},
        {"start_step": 2, "time": 20.0, "latest": "checkpoint-000002", "chosen": "checkpoint-000002"},
        {"start_step": 2, "time": 30.0, "latest": "checkpoint-000004", "chosen": "checkpoint-000002"},
    ]))
    progress = [{"step": s, "loss": 1.0 / s, "time": t} for s, t in [(1, 11), (2, 12), (3, 21), (4, 22), (3, 31), (4, 32)]]
    a = attempts(run, "sft", progress)
    assert [(x.start, x.last_done) for x in a] == [(0, 2), (2, 4), (2, 4)]
    row = fault_row("kill", a[1], a[2], since_checkpoint=2)
    assert (row.lost, row.repeated, row.same_losses) == (2, 2, True)
    assert row.outcome == "resumed at step 2 from checkpoint-000002 (checkpoint-000004 refused)"
    a[2].losses[3] = 0.5  # a repeated step that logged another loss
    assert fault_row("kill", a[1], a[2], since_checkpoint=2).same_losses is False
