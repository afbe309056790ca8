"""Trainer arguments: launcher-owned fields are listed once, set by the launcher, and a user
value for one is a config error naming the key and where the value comes from."""

from __future__ import annotations

import dataclasses

import pytest
import trl

from vlm_train.config import ConfigError, load_config
from vlm_train.train.args import OWNED, STAGE_OWNED, ArgsContext, build_training_args, owned, stage_kwargs

SFT = "configs/debug/internvl_tiny_sft.yaml"
GRPO = "configs/debug/internvl_tiny_grpo.yaml"


@pytest.fixture
def cfgs(repo, monkeypatch, tmp_path):
    monkeypatch.chdir(repo)
    common = [f"run.storage_path={tmp_path}", "run.name=r", "run.seed=7"]
    return {"sft": load_config(SFT, common), "grpo": load_config(GRPO, common)}


@pytest.mark.parametrize("stage", ["sft", "grpo"])
@pytest.mark.parametrize("key,source", [
    ("seed", "run.seed"), ("save_total_limit", "run.checkpoints_to_keep"),
    ("include_num_input_tokens_seen", "tokens_per_second"), ("save_only_model", "resume"),
    ("remove_unused_columns", "collator"), ("bf16", "model.dtype"), ("fp16", "model.dtype"),
    ("output_dir", "run directory"), ("deepspeed", "deepspeed.config"), ("use_cpu", "device"),
    ("report_to", "TensorBoard"), ("local_rank", "Ray Train"),
])
def test_user_value_for_owned_field_is_an_error(stage, key, source, repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError) as e:
        load_config(SFT if stage == "sft" else GRPO, [f"{stage}.{key}=1"])
    assert e.value.key == f"{stage}.{key}" and "is set by the launcher from" in e.value.reason and source in e.value.reason
    assert str(e.value).startswith(f"config error: {SFT if stage == 'sft' else GRPO}: {stage}.{key}:")


def test_stage_owned_fields(repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError, match=r"grpo.reward_weights: is set by the launcher from rewards.weights"):
        load_config(GRPO, ["grpo.reward_weights=[1.0]"])
    with pytest.raises(ConfigError, match=r"sft.reward_weights: unknown SFTConfig field"):  # GRPO's claim only
        load_config(SFT, ["sft.reward_weights=[1.0]"])
    with pytest.raises(ConfigError, match=r"sft.dataset_kwargs.skip_prepare_dataset: is set by the launcher"):
        load_config(SFT, ["sft.dataset_kwargs={skip_prepare_dataset: false}"])


def test_every_owned_field_is_a_trl_field():
    for stage, cls in (("sft", trl.SFTConfig), ("grpo", trl.GRPOConfig)):
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(owned(stage)) <= names, set(owned(stage)) - names


@pytest.mark.parametrize("stage", ["sft", "grpo"])
@pytest.mark.parametrize("cuda", [False, True])
def test_builder_sets_only_owned_fields_over_the_user(stage, cuda, cfgs):
    cfg = cfgs[stage]
    kw = stage_kwargs(ArgsContext(cfg, stage, rank=1, cuda=cuda))
    user = getattr(cfg, stage)
    from vlm_train.train.args import STAGE_DEFAULTS
    from vlm_train.train.dataloading import dataloader_defaults

    # Whatever is neither the user's nor our default (SFT: also the pool's dataloader defaults)
    # is launcher-owned, and listed once.
    pool = dataloader_defaults(cfg) if stage == "sft" else {}
    set_by_launcher = {k for k in kw if k not in user and k not in STAGE_DEFAULTS[stage] and k not in pool}
    assert set_by_launcher <= set(owned(stage))
    assert not set(OWNED) & set(STAGE_OWNED[stage])
    # Every user key reaches the trainer untouched.
    assert all(kw[k] == v for k, v in user.items() if k != "dataset_kwargs")
    assert kw["seed"] == 7 and kw["output_dir"] == str(cfg.run_dir.work(stage, 1))
    assert kw["use_cpu"] is (not cuda) and kw["bf16"] is cuda and kw["fp16"] is False
    assert kw["deepspeed"]["bf16"] == {"enabled": cuda}
    if stage == "grpo":
        assert kw["reward_weights"] == [1.0, 0.1, 0.2]  # iou, format, region as configured


def test_built_trl_configs_on_cpu(cfgs):
    sft = build_training_args(cfgs["sft"], "sft", rank=0, cuda=False)
    assert isinstance(sft, trl.SFTConfig)
    assert sft.seed == 7 and sft.bf16 is False and sft.fp16 is False and sft.save_total_limit == 1
    assert sft.dataset_kwargs["skip_prepare_dataset"] is True and sft.max_steps == 8
    grpo = build_training_args(cfgs["grpo"], "grpo", rank=0, cuda=False)
    assert isinstance(grpo, trl.GRPOConfig) and grpo.reward_weights == [1.0, 0.1, 0.2] and grpo.bf16 is False
    # SFT: our trainer counts real tokens; GRPO: TRL counts them itself (the Trainer's count would
    # look for pixel_values among the prompts and warn every step).
    assert sft.include_num_input_tokens_seen == "non_padding" and grpo.include_num_input_tokens_seen == "no"


def test_dtype_decides_precision(cfgs):
    import dataclasses as dc

    cfg = cfgs["sft"]
    cfg = dc.replace(cfg, model=dc.replace(cfg.model, dtype="float16"))
    kw = stage_kwargs(ArgsContext(cfg, "sft", 0, cuda=True))
    assert kw["fp16"] is True and kw["bf16"] is False and kw["deepspeed"]["fp16"]["enabled"] is True
    cfg = dc.replace(cfg, model=dc.replace(cfg.model, dtype="float32"))
    kw = stage_kwargs(ArgsContext(cfg, "sft", 0, cuda=True))
    assert kw["fp16"] is False and kw["bf16"] is False and "fp16" not in kw["deepspeed"]
