"""run.checkpoints_to_keep over every checkpoint folder of a stage: the ones Ray never
registered (half-written, or whole but unreported) and ``.K`` re-saves too."""

from __future__ import annotations

import json

from tests.train.test_resume import _ckpt
from vlm_train.train.callbacks import RayCheckpointCallback
from vlm_train.train.prune import SNAPSHOT, prune_checkpoints
from vlm_train.train.resume import checkpoint_key, choose_checkpoint


def _half_written(stage, name):
    """A save killed mid-upload: part of its shards, no manifest."""
    d = stage / name
    (d / "global_step").mkdir(parents=True)
    (d / "global_step" / "zero_pp_rank_0_optim_states.pt").write_bytes(b"x" * 10)
    return d


def _whole(tmp_path, stage, step, name):
    """A whole checkpoint of ``step`` saved under ``name`` (a re-save)."""
    return _ckpt(tmp_path / "elsewhere", step).rename(stage / name)


def _snapshot(stage, registered, latest):
    """The fields of Ray Train's checkpoint_manager_snapshot.json that name folders."""
    entry = lambda n: {"checkpoint_dir_name": n, "metrics": {}}  # noqa: E731
    (stage / SNAPSHOT).write_text(json.dumps({
        "checkpoint_results": [entry(n) for n in registered], "latest_checkpoint_result": entry(latest),
        "pending_training_results": [], "current_report_index": len(registered)}))


def _names(stage):
    return sorted((p.name for p in stage.glob("checkpoint-*")), key=checkpoint_key)


def test_prune_keeps_the_newest_whole_and_deletes_what_ray_never_registered(tmp_path):
    stage = tmp_path / "sft"
    # Attempt 1 saved 2; attempt 2 was killed writing 4 (half-written, never registered);
    # attempt 3 resumed from 2 and saved 4 again as 4.1, then 6, 8; a whole 10 whose report
    # Ray never collected is resumed from by attempt 4, which saves 12. Ray (num_to_keep=2)
    # registered 2, 4.1, 6, 8, 12 in turn and holds the last two of them.
    _ckpt(stage, 2)
    _half_written(stage, "checkpoint-000004")
    _whole(tmp_path, stage, 4, "checkpoint-000004.1")
    for step in (6, 8, 10, 12):
        _ckpt(stage, step)
    _snapshot(stage, ["checkpoint-000008", "checkpoint-000012"], "checkpoint-000012")
    assert _names(stage) == ["checkpoint-000002", "checkpoint-000004", "checkpoint-000004.1", "checkpoint-000006",
                             "checkpoint-000008", "checkpoint-000010", "checkpoint-000012"]

    gone = prune_checkpoints(stage, keep=2, protect=[stage / "checkpoint-000010"])
    # Kept: the newest 2 whole (10, 12), the one resumed from (10), Ray's own (8, 12).
    # Deleted: whole ones beyond keep that Ray no longer names (2, 4.1, 6), the half-written 4.
    assert [p.name for p in gone] == ["checkpoint-000002", "checkpoint-000004", "checkpoint-000004.1", "checkpoint-000006"]
    assert _names(stage) == ["checkpoint-000008", "checkpoint-000010", "checkpoint-000012"]
    assert choose_checkpoint(stage / "checkpoint-000012", stage) == stage / "checkpoint-000012"
    assert prune_checkpoints(stage, keep=2) == []  # Ray's 8 stays until Ray deletes it itself


def test_prune_never_deletes_the_newest_whole_nor_what_may_still_be_uploading(tmp_path):
    stage = tmp_path / "sft"
    c2, c4 = _ckpt(stage, 2), _ckpt(stage, 4)
    _half_written(stage, "checkpoint-000006")  # this save, other ranks still uploading
    # No snapshot: Ray has registered nothing yet, so no folder can be told from a pending one.
    assert prune_checkpoints(stage, keep=1) == [] and c2.is_dir()
    _snapshot(stage, ["checkpoint-000002"], "checkpoint-000002")
    # Newer than Ray's latest (2): 4 may be a report Ray has not collected yet; kept.
    assert prune_checkpoints(stage, keep=1) == []
    _snapshot(stage, ["checkpoint-000004"], "checkpoint-000004")
    assert prune_checkpoints(stage, keep=1) == [c2]
    assert _names(stage) == ["checkpoint-000004", "checkpoint-000006"]  # the newest whole, the one in flight
    # The newest whole one is never deleted, whatever keep says; keep=None (keep all) deletes nothing.
    (c4 / "MANIFEST.rank1.json").unlink()
    c8 = _ckpt(stage, 8)
    _snapshot(stage, ["checkpoint-000008"], "checkpoint-000008")
    assert prune_checkpoints(stage, keep=None) == []
    assert prune_checkpoints(stage, keep=1) == [c4, stage / "checkpoint-000006"] and c8.is_dir()


def test_resave_suffixes_order_numerically():
    names = ["checkpoint-000004.10", "checkpoint-000006", "checkpoint-000004", "checkpoint-000004.9"]
    assert sorted(names, key=checkpoint_key) == ["checkpoint-000004", "checkpoint-000004.9", "checkpoint-000004.10",
                                                 "checkpoint-000006"]
    assert checkpoint_key("checkpoint_manager_snapshot.json") is None and checkpoint_key("checkpoint-4.tmp") is None


def test_the_checkpoint_callback_prunes_after_each_save_on_rank_0_only(tmp_path, monkeypatch):
    import types

    import ray.train

    stage, local = tmp_path / "sft", tmp_path / "local"
    for step in (2, 4):
        _ckpt(stage, step)
    _half_written(stage, "checkpoint-000006")  # a killed attempt's save of 6
    _snapshot(stage, ["checkpoint-000004"], "checkpoint-000004")
    names = []

    def report(metrics, checkpoint, checkpoint_dir_name):
        names.append(checkpoint_dir_name)
        if len(names) == 2:  # both ranks reported: the save is whole in storage, and registered
            _whole(tmp_path, stage, 6, checkpoint_dir_name)
            _snapshot(stage, [checkpoint_dir_name], checkpoint_dir_name)

    monkeypatch.setattr(ray.train, "report", report)
    cb = RayCheckpointCallback(stage, keep=1)
    cb.resumed = stage / "checkpoint-000004"
    state = types.SimpleNamespace(global_step=6, epoch=1.0, log_history=[{"loss": 1.0}])

    def save(rank):
        (local / "checkpoint-6").mkdir(parents=True, exist_ok=True)
        cb.on_save(types.SimpleNamespace(output_dir=str(local), process_index=rank, world_size=2), state, None)

    save(1)  # rank 1 never prunes
    assert names == ["checkpoint-000006.1"]
    assert _names(stage) == ["checkpoint-000002", "checkpoint-000004", "checkpoint-000006"]
    save(0)
    assert names == ["checkpoint-000006.1"] * 2
    # 2: beyond keep=1; the half-written 6: older than the whole 6.1. 4: resumed from.
    assert _names(stage) == ["checkpoint-000004", "checkpoint-000006.1"]
