"""Bitwise resume for GRPO: CPU fp32, stopped after step k and resumed from its checkpoint, logs
the same losses and rewards and ends with the same weights as a run that was never interrupted.

Rewards depend on what the rollouts sampled, so equal rewards after the resume mean the
sampling RNG of generation was restored too. The reward here is a checksum of the completion's
text: any other sampled token changes it (the untrained model's completions have no structure a
task reward could score: its tokens are mostly not letters), so every group has non-zero
advantages (the update depends on the samples) and a re-drawn sample changes the logged
reward; a control run resumed without the checkpoint's RNG state shows that it does.
"""

from __future__ import annotations

import zlib

import pytest
import torch
from transformers import TrainerCallback

from vlm_train.config import DataConfig, ModelConfig, SyntheticConfig, ToolsConfig
from vlm_train.data.load import load_dataset
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.train.callbacks import StopAtStepCallback
from vlm_train.train.resume import install_weight_resume

STEPS, STOP = 4, 2


class Ran(TrainerCallback):
    """The steps this run executed itself (a resume that silently started over runs them all)."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def checksum(completions, **kw):
    texts = ["".join(m["content"] for m in c if m["role"] == "assistant") for c in completions]
    return [zlib.crc32(t.encode()) % 1000 / 1000 for t in texts]


def _run(tiny, data, out, stop_at=None, resume=None, keep_rng=True):
    from datasets import Dataset
    from trl import GRPOConfig

    from vlm_train.train.grpo import VLMGRPOTrainer, grpo_rows, wrap_reward
    from vlm_train.train.rollout import CropToolRollout

    fam = get_family("internvl")
    torch.manual_seed(0)  # what init_worker_env does; the resumed run's RNG must come from the checkpoint
    model, proc = fam.load(ModelConfig(path=str(tiny)), dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, report_to=[], per_device_train_batch_size=4,
        num_generations=4, max_completion_length=16, learning_rate=5e-4, max_steps=STEPS, beta=0.0,
        temperature=1.0, logging_steps=1, save_strategy="steps", save_steps=STOP, seed=7,
        dataloader_num_workers=0,
    )
    args.reward_weights = [1.0]
    builder = fam.make_inputs(proc, InputsConfig(image_roots=tuple(data.image_roots)))
    rollout = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=1), data.image_roots)
    trainer = VLMGRPOTrainer(
        model=model, reward_funcs=[wrap_reward(checksum)], args=args,
        train_dataset=Dataset.from_list(grpo_rows(data.samples, fam.coords)), processing_class=proc,
        rollout=rollout, callbacks=[StopAtStepCallback(stop_at), ran := Ran()],
    )
    install_weight_resume(trainer)  # what the stage loop does before resuming
    if not keep_rng:  # the control: everything but the RNG state comes from the checkpoint
        trainer._load_rng_state = lambda checkpoint: None
    trainer.train(resume_from_checkpoint=resume)
    logged = {h["step"]: (h["loss"], h["reward"], h["frac_reward_zero_std"], h["completions/mean_length"])
              for h in trainer.state.log_history if "loss" in h}
    return logged, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, ran.steps


@pytest.mark.slow  # four short in-process GRPO runs (~1 min on 2 cores), no Ray
def test_grpo_stop_and_resume_equals_uninterrupted(tiny_internvl, tmp_path, monkeypatch):
    # A single-process "distributed" world for accelerate.
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29535"}.items():
        monkeypatch.setenv(k, v)
    data = load_dataset(DataConfig(synthetic=SyntheticConfig(n=8, seed=3, kind="mixed")), "train",
                        work_dir=tmp_path, family=get_family("internvl"))
    full, full_w, _ = _run(tiny_internvl, data, tmp_path / "full")
    assert sorted(full) == list(range(1, STEPS + 1))
    # Every step's group of rollouts differed in reward: the update depends on what was sampled.
    assert all(zero_std == 0 for _, _, zero_std, _ in full.values()), full
    first, _, _ = _run(tiny_internvl, data, tmp_path / "cut", stop_at=STOP)
    assert sorted(first) == list(range(1, STOP + 1))
    rest, rest_w, ran = _run(tiny_internvl, data, tmp_path / "cut", resume=str(tmp_path / "cut" / f"checkpoint-{STOP}"))
    assert ran == list(range(STOP + 1, STEPS + 1))  # it resumed: steps 1..k came from the checkpoint
    assert {s: rest[s] for s in range(1, STOP + 1)} == first
    assert rest == full  # every step's loss, reward and completion length, exactly
    assert full_w.keys() == rest_w.keys() and all(torch.equal(full_w[k], rest_w[k]) for k in full_w)
    # The control: resumed with the same weights, optimizer, data position but a fresh RNG, the
    # rollouts (and so rewards and losses) of the resumed steps differ.
    fresh, _, _ = _run(tiny_internvl, data, tmp_path / "cut", resume=str(tmp_path / "cut" / f"checkpoint-{STOP}"), keep_rng=False)
    assert all(fresh[s] != full[s] for s in range(STOP + 1, STEPS + 1)), (fresh, full)
