"""A run directory reuses a finished stage (or a built tiny model) only for the job that made it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_train.config import ConfigError, load_config
from vlm_train.launch.base_model import materialise_model
from vlm_train.launch.same_job import check_stage, record_stage, stage_keys

CFG = "configs/debug/internvl_tiny_pipeline.yaml"


def cfg(repo: Path, tmp_path: Path, *over: str):
    return load_config(repo / CFG, [f"run.storage_path={tmp_path}", "run.name=r", *over], check_trl=False)


def test_a_changed_job_is_refused_naming_its_keys(repo, tmp_path):
    record_stage(cfg(repo, tmp_path), "sft")
    record_stage(cfg(repo, tmp_path), "grpo")
    check_stage(cfg(repo, tmp_path), "sft")  # the same job: reused
    with pytest.raises(ConfigError) as e:
        check_stage(cfg(repo, tmp_path, "sft.max_steps=250", "data.synthetic.n=512"), "sft")
    msg = str(e.value)
    assert "data.synthetic.n: 2048 -> 512" in msg and "sft.max_steps: 300 -> 250" in msg and str(tmp_path / "r") in msg
    assert e.value.key == "data.synthetic.n"
    # GRPO starts from SFT's model: a changed SFT makes a finished GRPO stage another job's too.
    with pytest.raises(ConfigError, match="sft.learning_rate"):
        check_stage(cfg(repo, tmp_path, "sft.learning_rate=1e-3"), "grpo")
    # ... but SFT never depends on GRPO's settings.
    check_stage(cfg(repo, tmp_path, "grpo.learning_rate=1e-4"), "sft")


def test_what_only_steers_the_run_may_change(repo, tmp_path):
    record_stage(cfg(repo, tmp_path), "sft")
    check_stage(cfg(repo, tmp_path, "run.max_failures=3", "run.fail_at_step=5", "sft.save_steps=10",
                    "sft.logging_steps=5", "cluster.nodes=1"), "sft")
    with pytest.raises(ConfigError, match="run.seed"):
        check_stage(cfg(repo, tmp_path, "run.seed=7"), "sft")


def test_a_setting_added_later_counts_as_unchanged_at_its_default(repo, tmp_path):
    from vlm_train.runstate import read_json, write_json_atomic

    c = cfg(repo, tmp_path)
    record_stage(c, "sft")
    # A record written before data.synthetic.min_shapes existed lacks the key: at its default
    # (1) the job is the same one, so an upgrade does not strand a run half-way ...
    path = c.run_dir.stage_job("sft")
    old = read_json(path)
    del old["data.synthetic.min_shapes"], old["data.synthetic.modes"]
    write_json_atomic(path, old)
    check_stage(cfg(repo, tmp_path), "sft")
    # ... and set to anything else it is another job.
    with pytest.raises(ConfigError, match=r"data.synthetic.modes: '\(unset\)' -> \['pattern'\]"):
        check_stage(cfg(repo, tmp_path, "data.synthetic.modes=[pattern]"), "sft")


def test_a_stage_without_a_record_is_reused(repo, tmp_path):
    check_stage(cfg(repo, tmp_path, "sft.max_steps=1"), "sft")  # a run directory from before the record


def test_keys_are_json_and_hold_no_secrets(repo, tmp_path):
    c = cfg(repo, tmp_path)
    c.sft["hub_token"] = "hf_abcdef"  # as from a YAML file (the command line refuses secrets)
    keys = stage_keys(c, "sft")
    assert json.loads(json.dumps(keys)) == keys
    assert "hf_abcdef" not in json.dumps(keys)
    assert "run.name" not in keys and "cluster.pool" not in keys and "sft.save_steps" not in keys


class FakeFamily:
    """Builds a 'tiny model' (a config.json) and counts the builds."""

    def __init__(self):
        self.builds = 0

    def tiny(self, out: Path, **kw):
        self.builds += 1
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(kw))


def test_a_tiny_model_built_with_other_settings_is_refused(repo, tmp_path):
    fam = FakeFamily()
    materialise_model(cfg(repo, tmp_path), fam)
    materialise_model(cfg(repo, tmp_path), fam)
    assert fam.builds == 1  # built once, then reused
    with pytest.raises(ConfigError) as e:
        materialise_model(cfg(repo, tmp_path, "model.tiny.vision_pretrain_steps=400"), fam)
    assert e.value.key == "model.tiny" and "model.tiny.vision_pretrain_steps: 500 -> 400" in str(e.value)
    assert fam.builds == 1


def test_pattern_pretraining_reaches_the_tiny_build(repo, tmp_path):
    fam = FakeFamily()
    out = materialise_model(cfg(repo, tmp_path, "model.tiny.vision_pretrain_patterns=true"), fam)
    built = json.loads((Path(out.model.path) / "config.json").read_text())
    assert built["vision_pretrain_patterns"] is True and built["vision_pretrain_steps"] == 500
    # The default build is called as before, without the key (families need not know it).
    plain = materialise_model(cfg(repo, tmp_path / "b"), fam)
    assert "vision_pretrain_patterns" not in json.loads((Path(plain.model.path) / "config.json").read_text())
