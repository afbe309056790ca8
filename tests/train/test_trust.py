"""Resuming unpickles: checkpoints load only from a run directory nobody else could write;
final model directories hold no pickle."""

from __future__ import annotations

import os

import pytest
import torch

from vlm_train.train.final import drop_pickles
from vlm_train.train.trust import UntrustedCheckpoint, check_trusted


def _checkpoint(run):
    ck = run / "sft" / "checkpoint_000001" / "checkpoint"
    (ck / "global_step4").mkdir(parents=True)
    torch.save({"x": 1}, ck / "global_step4" / "mp_rank_00_model_states.pt")
    (ck / "trainer_state.json").write_text("{}")
    return ck


def test_world_writable_or_foreign_checkpoint_is_refused(tmp_path):
    run = tmp_path / "run"
    ck = _checkpoint(run)
    os.chmod(run, 0o755)
    check_trusted(ck, run)
    bad = ck / "global_step4" / "mp_rank_00_model_states.pt"
    os.chmod(bad, 0o666)
    with pytest.raises(UntrustedCheckpoint, match="mp_rank_00_model_states.pt is writable by every user"):
        check_trusted(ck, run)
    os.chmod(bad, 0o644)
    os.chmod(run / "sft", 0o777)  # anyone could swap the checkpoint folder
    with pytest.raises(UntrustedCheckpoint, match="writable by every user"):
        check_trusted(ck, run)
    os.chmod(run / "sft", 0o755)
    (ck / "link").symlink_to(tmp_path)
    with pytest.raises(UntrustedCheckpoint, match="links outside the checkpoint"):
        check_trusted(ck, run)
    (ck / "link").unlink()
    if os.getuid() == 0:  # only root can give a file away; as another user the check is the same code
        os.chown(ck / "trainer_state.json", 65534, 65534)
        with pytest.raises(UntrustedCheckpoint, match="owned by uid 65534"):
            check_trusted(ck, run)


def test_final_model_dir_has_no_training_args_pickle(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "o"), hub_token="hf_secret", report_to=[])
    torch.save(args, tmp_path / "training_args.bin")
    drop_pickles(tmp_path, args)
    assert not (tmp_path / "training_args.bin").exists()
    text = (tmp_path / "training_args.json").read_text()
    assert "hf_secret" not in text and '"output_dir"' in text
