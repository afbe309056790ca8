"""--dry-run's plan: placement, and per training stage the batch sizes TRL will use."""

from __future__ import annotations

import pytest

from vlm_train.config import ConfigError, load_config
from vlm_train.launch.plan import describe


def test_describe_sft_and_grpo(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config("configs/debug/internvl_tiny_pipeline.yaml", ["grpo.gradient_accumulation_steps=2"])
    plan = describe(cfg)
    assert plan["world_size"] == 2 and plan["zero_stage"] == 2 and plan["evaluate"] is True
    assert list(plan["stages"]) == ["sft", "grpo"]
    sft, grpo = plan["stages"]["sft"], plan["stages"]["grpo"]
    assert sft == {"per_device_batch_size": 8, "gradient_accumulation_steps": 1, "global_batch_size": 16,
                   "batch_unit": "samples"}
    # GRPO reads its own section (not sft:): 8 completions x 2 workers x 2 accumulation steps,
    # 4 completions per prompt.
    assert grpo["per_device_batch_size"] == 8 and grpo["global_batch_size"] == 32
    assert grpo["num_generations"] == 4 and grpo["generation_batch_size"] == 32 and grpo["prompts_per_generation"] == 8
    assert grpo["batch_unit"] == "completions"


def test_describe_packed_sft_counts_rows(repo, monkeypatch):
    # With sft.packing a micro-batch is per_device_train_batch_size rows of whole samples: the
    # plan must not call them samples (how many samples a row holds varies with their lengths).
    monkeypatch.chdir(repo)
    cfg = load_config("configs/debug/internvl_tiny_sft.yaml", ["sft.packing=true", "sft.max_length=512"])
    sft = describe(cfg)["stages"]["sft"]
    assert sft["batch_unit"] == "packed rows" and sft["row_tokens"] == 512
    assert sft["max_tokens_per_step"] == sft["global_batch_size"] * 512


def test_describe_grpo_defaults(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config("configs/debug/internvl_tiny_grpo.yaml", ["grpo={max_steps: 1}"])
    grpo = describe(cfg)["stages"]["grpo"]
    assert grpo["per_device_batch_size"] == 4 and grpo["num_generations"] == 4  # our GRPO defaults


def test_describe_rejects_a_generation_batch_without_whole_groups(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config("configs/debug/internvl_tiny_grpo.yaml", ["grpo.per_device_train_batch_size=3"])
    with pytest.raises(ConfigError, match=r"grpo.num_generations: 4 does not divide the generation batch of 6"):
        describe(cfg)


@pytest.mark.parametrize("overrides, key", [
    (["grpo.num_iterations=2", "grpo.save_steps=3"], "grpo.save_steps"),  # the instance: 3 of a 2-step cycle
    (["grpo.steps_per_generation=4", "grpo.gradient_accumulation_steps=2", "grpo.save_steps=1"], "grpo.save_steps"),
    (["grpo.num_iterations=2", "grpo.save_steps=2", "run.stop_at_step=1"], "run.stop_at_step"),
])
def test_grpo_checkpoints_fall_between_generation_batches(repo, monkeypatch, overrides, key):
    """A GRPO checkpoint mid-way through a buffered generation batch cannot resume exactly (the
    rollouts are not in it): such a save schedule is refused before anything starts."""
    monkeypatch.chdir(repo)
    cfg = load_config("configs/debug/internvl_tiny_grpo.yaml", overrides)
    with pytest.raises(ConfigError, match=rf"^config error: {key}: .*a checkpoint must fall between generation batches"):
        describe(cfg)


def test_grpo_checkpoints_on_cycle_boundaries_are_accepted(repo, monkeypatch):
    monkeypatch.chdir(repo)
    for overrides in (["grpo.num_iterations=2", "grpo.save_steps=4"],
                      ["grpo.steps_per_generation=4", "grpo.gradient_accumulation_steps=2", "grpo.save_steps=2"],
                      ["grpo.gradient_accumulation_steps=2", "grpo.save_steps=3"]):
        describe(load_config("configs/debug/internvl_tiny_grpo.yaml", overrides))
