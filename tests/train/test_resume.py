"""Bitwise resume: SFT on CPU in fp32, stopped after step k and resumed from its checkpoint,
logs the same losses and ends with the same weights as a run that was never interrupted
(data order, RNG, optimizer and scheduler state all restored)."""

from __future__ import annotations

import json

import pytest
import torch

from vlm_train.config import DataConfig, ModelConfig, SyntheticConfig
from vlm_train.data.load import load_dataset
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.train.callbacks import StopAtStepCallback
from vlm_train.train.dataset import rows
from vlm_train.train.nonfinite import NonFiniteGuard
from vlm_train.train.resume import checkpoint_problem, choose_checkpoint, install_weight_resume, write_manifest

STEPS, STOP = 6, 3


def _run(tiny, data, out, stop_at=None, resume=None):
    from trl import SFTConfig, SFTTrainer

    fam = get_family("internvl")
    model, proc = fam.load(ModelConfig(path=str(tiny)), dtype=torch.float32)
    guard = NonFiniteGuard("stop")
    collator = guard.wrap_collator(fam.make_inputs(proc, InputsConfig(image_roots=tuple(data.image_roots), max_length=512)))
    args = SFTConfig(output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=2, learning_rate=1e-3,
                     lr_scheduler_type="cosine", warmup_steps=2, weight_decay=0.1, report_to=[], use_cpu=True,
                     logging_steps=1, save_strategy="steps", save_steps=STOP, remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, dataloader_num_workers=0, max_length=512, seed=7)
    stopper = StopAtStepCallback(stop_at)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows(data.samples), data_collator=collator,
                         processing_class=proc, callbacks=[stopper])
    guard.install(trainer)
    install_weight_resume(trainer)  # what the stage loop does before resuming
    trainer.train(resume_from_checkpoint=resume)
    losses = {h["step"]: (h["loss"], h["grad_norm"]) for h in trainer.state.log_history if "loss" in h}
    return losses, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.slow  # three short in-process SFT runs (~1 min on 2 cores), no Ray
def test_sft_stop_and_resume_equals_uninterrupted(tiny_internvl, tmp_path):
    data = load_dataset(DataConfig(synthetic=SyntheticConfig(n=10, seed=3)), "train", work_dir=tmp_path, family=get_family("internvl"))
    full, full_w = _run(tiny_internvl, data, tmp_path / "full")
    first, _ = _run(tiny_internvl, data, tmp_path / "cut", stop_at=STOP)
    assert sorted(first) == list(range(1, STOP + 1))
    rest, rest_w = _run(tiny_internvl, data, tmp_path / "cut", resume=str(tmp_path / "cut" / f"checkpoint-{STOP}"))
    # The resumed history carries the checkpoint's steps 1..k, then its own k+1..n.
    assert {s: rest[s] for s in range(1, STOP + 1)} == first
    assert rest == full  # every step's loss and gradient norm, exactly
    assert full_w.keys() == rest_w.keys() and all(torch.equal(full_w[k], rest_w[k]) for k in full_w)


def _ckpt(stage_dir, step, shards=2):
    d = stage_dir / f"checkpoint-{step:06d}"
    (d / f"global_step{step}").mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for rank in range(shards):
        (d / f"global_step{step}" / f"zero_pp_rank_{rank}_optim_states.pt").write_bytes(b"x" * (1000 + rank))
        write_manifest(d, rank, shards)
    return d


def test_truncated_or_half_written_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    stage = tmp_path / "sft"
    c2, c4 = _ckpt(stage, 2), _ckpt(stage, 4)
    assert choose_checkpoint(c4, stage) == c4
    # Whole but never registered by Ray (a worker killed before its controller collected the
    # report): Ray hands over an older one, or none; the newest whole one is resumed.
    assert choose_checkpoint(c2, stage) == c4 and choose_checkpoint(None, stage) == c4
    shard = c4 / "global_step4" / "zero_pp_rank_1_optim_states.pt"
    shard.write_bytes(shard.read_bytes()[:100])  # a truncated shard in the latest checkpoint
    assert checkpoint_problem(c4).endswith("100 bytes, written as 1001 (truncated)")
    assert choose_checkpoint(c4, stage) == c2
    # A save killed before its manifests were written is never chosen either.
    c6 = stage / "checkpoint-000006"
    (c6 / "global_step6").mkdir(parents=True)
    (c6 / "trainer_state.json").write_text("{}")
    (c6 / "MANIFEST.rank0.json").write_text('{"global_step6/zero_pp_rank_0_optim_states.pt": 1000}')
    assert "missing" in checkpoint_problem(c6)
    assert choose_checkpoint(c6, stage) == c2
    # A rank killed while uploading: the folder holds rank 0's part, whole by its own manifest.
    c8 = _ckpt(stage, 8)
    (c8 / "MANIFEST.rank1.json").unlink()
    (c8 / "global_step8" / "zero_pp_rank_1_optim_states.pt").unlink()
    assert checkpoint_problem(c8).endswith("no manifest of rank 1 of 2 (that rank never finished writing)")
    assert choose_checkpoint(c8, stage) == c2
    (c2 / "MANIFEST.rank0.json").unlink()
    (c2 / "MANIFEST.rank1.json").unlink()
    assert choose_checkpoint(c6, stage) is None  # nothing whole left: the stage starts over


def test_a_save_never_reuses_a_storage_folder(tmp_path):
    from vlm_train.train.callbacks import RayCheckpointCallback

    cb = RayCheckpointCallback(tmp_path)
    assert cb.dir_name(4) == "checkpoint-000004"
    (tmp_path / "checkpoint-000004").mkdir()  # a damaged or half-written one of an earlier attempt
    assert cb.dir_name(4) == "checkpoint-000004.1"
    (tmp_path / "checkpoint-000004.1").mkdir()
    assert cb.dir_name(4) == "checkpoint-000004.2"
    # Newest first by name: a re-save sorts after the folder it replaces, before the next step.
    assert sorted(["checkpoint-000006", "checkpoint-000004.1", "checkpoint-000004"]) == [
        "checkpoint-000004", "checkpoint-000004.1", "checkpoint-000006"]
