"""Atomic run state, recovery from truncated state files, one driver per run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from vlm_train.runstate import LOCK_NAME, RunLocked, read_json, run_lock, write_text_atomic

_HOLD = """
import sys, time
from vlm_train.runstate import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(run_dir):
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_killed_writer_leaves_the_old_or_the_new_state(tmp_path):
    target = tmp_path / "stages" / "sft.json"
    write_text_atomic(target, json.dumps({"step": 1}))
    big = json.dumps({"step": 2, "pad": "x" * 20_000_000})
    code = ("import sys; from vlm_train.runstate import write_text_atomic\n"
            f"while True: write_text_atomic({str(target)!r}, {big[:40]!r} + 'x' * 20_000_000 + '\"}}')\n")
    p = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    time.sleep(1.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    got = read_json(target)
    assert got is not None and got["step"] in (1, 2)  # never half a file
    # A file truncated anyway (an older writer, a full disk) reads as missing, not a crash.
    target.write_text('{"step": 3, "log_hist')
    assert read_json(target) is None


def test_second_driver_refused_and_dead_drivers_lock_taken_over(tmp_path):
    run = tmp_path / "runs" / "r1"
    holder = _holder(run)
    try:
        with pytest.raises(RunLocked, match=rf"in use by another driver \(pid {holder.pid} on "):
            with run_lock(run):
                pass
        from tests.cluster.helpers import write_config
        from vlm_train.config import load_config
        from vlm_train.launch.cli import run_job

        cfg = load_config(write_config(tmp_path, "r1"))
        assert cfg.run_dir.root == run
        assert run_job(cfg) == 2  # refused before preparing data or starting Ray
        assert not (run / "data").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_NAME).exists()  # the dead driver's lock file is still there ...
    with run_lock(run):  # ... and taken over
        assert f"pid {os.getpid()}" in (run / LOCK_NAME).read_text()


def test_prepared_data_recovers_from_truncation_and_follows_data_config(tmp_path):
    from tests.cluster.helpers import write_config
    from vlm_train.config import load_config
    from vlm_train.data.prepare import prepare_data
    from vlm_train.launch.pipeline import stage_done
    from vlm_train.models import get_family

    family = get_family("internvl")
    path = write_config(tmp_path, "p", data={"synthetic": {"n": 6, "n_eval": 2}})
    cfg = load_config(path)
    first = prepare_data(cfg, family)
    assert first.n_train == 6
    meta = cfg.run_dir.prepared
    meta.write_text(meta.read_text()[:40])  # truncated: prepared again, not a crash
    assert prepare_data(cfg, family).n_train == 6
    changed = load_config(path, ["data.synthetic.n=9"])
    assert prepare_data(changed, family).n_train == 9  # a changed data config invalidates prepared.json
    assert json.loads(meta.read_text())["n_train"] == 9
    assert prepare_data(changed, family).n_train == 9
    cfg.run_dir.stage_status("sft").parent.mkdir(parents=True)
    cfg.run_dir.stage_status("sft").write_text('{"complete": tr')
    assert stage_done(cfg, "sft") is False  # damaged status: the stage is resumed, not skipped or crashed
