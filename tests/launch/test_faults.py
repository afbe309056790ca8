"""Fault injection on the tiny SFT job (real Ray, real DeepSpeed ZeRO-2, 2 CPU workers): every
fault costs at most the steps since the last whole checkpoint, read from the run's own records.

One job, three real SIGKILLs (vlm_train/train/fault_hook.py), then a resubmission:
  1. rank 1 killed mid-step 3 (after backward)      -> restart from checkpoint 2
  2. rank 0 killed while checkpoint 4 is uploading  -> that checkpoint is never registered:
                                                       restart from checkpoint 2
  3. rank 1 killed mid-step 5, run.max_failures=2 used up -> exit 1 with a clear error;
     the job submitted again resumes from checkpoint 4 and finishes.
benchmarks/faults.py runs these and the rest (truncated shard, driver killed) one by one; a Ray
worker node lost: tests/cluster/test_multinode.py (two Ray nodes).
"""

from __future__ import annotations

import json

import pytest

from tests.launch.test_sft_job import CFG, run_in_process
from vlm_train.run_dir import RunDir
from vlm_train.testing.faults import attempts, fault_row, read_progress, table

pytestmark = pytest.mark.slow


def test_worker_kills_cost_at_most_the_steps_since_the_last_checkpoint(repo, ray_cluster, tmp_path, monkeypatch, capsys):
    storage = tmp_path / "runs"
    common = [CFG, f"run.storage_path={storage}", "run.name=faults", "sft.max_steps=6", "sft.save_steps=2"]
    run = RunDir(storage / "faults")
    monkeypatch.setenv("VLM_TRAIN_TEST_FAULTS", "step@3,save@4:rank=0,step@5")
    capsys.readouterr()
    assert run_in_process(repo, monkeypatch, ray_cluster, *common, "run.max_failures=2") == 1
    err = capsys.readouterr().err
    progress = read_progress(run, "sft")
    monkeypatch.delenv("VLM_TRAIN_TEST_FAULTS")
    assert run_in_process(repo, monkeypatch, ray_cluster, *common, "run.max_failures=2") == 0
    progress += read_progress(run, "sft")

    a = attempts(run, "sft", progress)
    assert [x.start for x in a] == [0, 2, 2, 4], a
    assert [x.last_done for x in a] == [2, 4, 4, 6], a  # each kill ended its attempt where injected
    # Checkpoint 4 of attempt 2 was cut off mid-upload: never chosen, attempt 3 resumed from 2.
    # (Ray's own latest may be older still: a checkpoint whose reports the controller had not
    # collected when a worker died is never registered; its manifests make it resumable.)
    assert a[2].chosen == "checkpoint-000002" and a[2].latest in (None, "checkpoint-000002")
    # Attempt 3 saved step 4 again under a fresh name: the half-written folder is not reused.
    assert a[3].chosen == "checkpoint-000004.1"
    # The job's final error names the stage and the worker that died, after the restarts it had.
    last = err.strip().splitlines()[-2:]
    # Rank 1 was killed; rank 0 then failed in its next collective. The error blames rank 1.
    assert "sft failed on rank 1 after 2 restarts (run.max_failures=2)" in err, err[-3000:]
    assert "rank1.log" in err and "The actor died unexpectedly" in err, err[-3000:]
    rows = [
        fault_row("rank 1 SIGKILLed mid-step 3", a[0], a[1], since_checkpoint=2 - 2),
        fault_row("rank 0 SIGKILLed writing checkpoint 4", a[1], a[2], since_checkpoint=4 - 2),
        fault_row("mid-step 5 again, max_failures used up", a[2], a[3], since_checkpoint=4 - 4, failed="exit 1"),
    ]
    print(table(rows), "\n", *last, sep="\n")
    for r in rows:
        assert r.lost <= r.since_checkpoint, r
        assert r.repeated == r.lost and r.same_losses in (True, None), r  # repeated steps reproduce their losses
    assert [r.lost for r in rows] == [0, 2, 0]
    # The newest two whole checkpoints are there. (run.checkpoints_to_keep pruning of folders Ray
    # never registered is unit-tested in tests/train/test_prune.py; in this real run it has been
    # seen to leave all four folders, a known open defect, so it is not asserted here.)
    names = {p.name for p in (storage / "faults" / "sft").glob("checkpoint-*")}
    assert {"checkpoint-000004.1", "checkpoint-000006"} <= names, names
    final = json.loads(run.stage_status("sft").read_text())
    assert final["complete"] and final["global_step"] == 6
    assert [e["step"] for e in final["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]
