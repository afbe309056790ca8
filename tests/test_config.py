"""Config loading: overrides, and the table of bad configs (clear message, exit 2, no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlm_train.config import ConfigError, load_config
from vlm_train.models import DEFAULT_FAMILY, FAMILIES

BASE = "configs/debug/internvl_tiny_sft.yaml"

# (description, overrides or raw YAML, expected message fragment)
BAD = [
    ("unknown section", ["modle.path=x"], "modle: unknown key"),
    ("unknown nested key", ["model.lora.rank=8"], "model.lora.rank: unknown key"),
    ("wrong type", ["model.lora.r=eight"], "model.lora.r: expected an integer"),
    ("bad choice", ["model.family=llava"], f"model.family: unknown model family 'llava' (known: {', '.join(FAMILIES)})"),
    ("missing checkpoint", ["model.path=/nonexistent/ckpt"], "model.path: checkpoint directory not found"),
    ("pool too small", ["cluster.nodes=5"], "cluster.nodes: asks for 5 nodes but pool 'local-cpu' has max_nodes 2"),
    ("too many workers per node", ["cluster.workers_per_node=4"], "cluster.workers_per_node: asks for 4 workers"),
    ("unknown pool", ["cluster.pool=tpu-v5"], "cluster.pool: unknown pool 'tpu-v5'"),
    ("unknown TRL field", ["sft.learning_rat=0.1"], "sft.learning_rat: unknown SFTConfig field"),
    ("launcher-owned TRL field", ["sft.output_dir=/tmp/x"], "sft.output_dir: is set by the launcher"),
    ("TRL field wrong type", ["sft.max_steps=many"], "sft.max_steps: expected a number"),
    ("missing DeepSpeed json", ["deepspeed.config=configs/deepspeed/zero9.json"], "deepspeed.config: DeepSpeed config not found"),
    ("fraction out of range", ["data.max_error_fraction=2"], "data.max_error_fraction: must be in [0, 1]"),
    # Inside an optional section the message names the key, not just the section.
    ("bad key in an optional section", ["data.synthetic.crop_fraction=2"], "data.synthetic.crop_fraction: must be in [0, 1]"),
    ("unknown synthetic mode", ["data.synthetic.modes=[texture]"], "data.synthetic.modes: must be a non-empty list among"),
    ("min_shapes above max_shapes", ["data.synthetic.min_shapes=9"], "data.synthetic.min_shapes: must be in [1, max_shapes="),
    ("pattern pretraining without pretraining", ["model.tiny.vision_pretrain_patterns=true"],
     "model.tiny.vision_pretrain_patterns: needs model.tiny.vision_pretrain_steps > 0"),
    ("missing data file", ["data.train=[{path: /no/such.jsonl}]"], "data.train[0].path: data file not found"),
    ("unknown stage", ["stages=[sft, dpo]"], "stages: unknown stage 'dpo'"),
    ("eval not last", ["stages=[eval, sft]"], "stages: eval comes once, last"),
    ("removed field", ["model.trust_remote_code=true"], "model.trust_remote_code: unknown key"),
    ("launcher-owned seed", ["sft.seed=3"], "sft.seed: is set by the launcher from run.seed"),
    ("override syntax", ["sft.max_steps"], "override must look like key.path=value"),
    # Formats are named after file layouts: the old family-named aliases are gone.
    ("family-named format", ["data.train=[{path: README.md, format: ovis}]"], "data.train[0].format: must be one of"),
]


@pytest.mark.parametrize("desc,overrides,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_before_ray(desc, overrides, message, repo, monkeypatch, capsys):
    import ray

    from jobs import sft

    def no_ray(*a, **k):
        raise AssertionError("ray.init must not be called for a bad config")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.chdir(repo)
    with pytest.raises(SystemExit) as e:
        sft.main([BASE, *overrides])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert BASE in err or "override" in message  # the message names the file


def test_bad_yaml_names_line(tmp_path, repo, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  family: internvl\n  path: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert str(bad) in str(e.value) and "line" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_exit_code_in_a_real_process(repo):
    r = subprocess.run(
        [sys.executable, "-m", "jobs.sft", BASE, "cluster.nodes=9"], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert "cluster.nodes" in r.stderr and BASE in r.stderr


def test_overrides_and_paths_are_absolute(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config(BASE, ["sft.max_steps=3", "run.name=x", "model.lora.enabled=true", "cluster.workers_per_node=1"])
    assert cfg.sft["max_steps"] == 3 and cfg.run.name == "x" and cfg.model.lora.enabled
    assert Path(cfg.deepspeed.config).is_absolute() and Path(cfg.run.storage_path).is_absolute()


def test_dry_run_prints_resources(repo):
    r = subprocess.run(
        [sys.executable, "-m", "jobs.sft", BASE, "--dry-run", "sft.gradient_accumulation_steps=3"],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert '"world_size": 2' in r.stdout and '"global_batch_size": 24' in r.stdout  # 4 x 3 x 2


def test_secrets_are_redacted():
    from vlm_train.config import redact

    out = redact({"grpo": {"hub_token": "abc", "x": 1}, "env": {"WANDB_API_KEY": "k"}})
    assert out["grpo"]["hub_token"] == "***" and out["env"]["WANDB_API_KEY"] == "***" and out["grpo"]["x"] == 1


def test_exponent_floats_without_dot(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config(BASE, ["sft.learning_rate=1e-4", "sft.weight_decay=5E-2"])
    assert cfg.sft["learning_rate"] == 1e-4 and cfg.sft["weight_decay"] == 0.05


def test_per_sample_costs_are_bounded(tmp_path):
    """Frames per video, images per sample, tokens per sample and the crop floor have bounds."""
    from tests.cluster.helpers import write_config
    from vlm_train.config import MAX_FRAMES, MAX_IMAGES, MAX_TOKENS

    path = write_config(tmp_path, "b", data={"synthetic": {"n": 4}})
    for override, key in [
        (f"data.num_frames={MAX_FRAMES + 1}", "data.num_frames"),
        ("data.num_frames=0", "data.num_frames"),
        (f"data.max_images_per_sample={MAX_IMAGES + 1}", "data.max_images_per_sample"),
        ("data.max_images_per_sample=0", "data.max_images_per_sample"),
        ("data.max_image_pixels=0", "data.max_image_pixels"),
        ("tools.min_crop_size=0", "tools.min_crop_size"),
        ("tools.min_crop_size=-3", "tools.min_crop_size"),
        ("sft.max_length=null", "sft.max_length"),
        (f"sft.max_length={MAX_TOKENS + 1}", "sft.max_length"),
        ("sft.max_length=0", "sft.max_length"),
        ("grpo.max_completion_length=null", "grpo.max_completion_length"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path, [override])
    cfg = load_config(path, ["data.num_frames=32", "sft.max_length=4096", "tools.min_crop_size=1"])
    assert cfg.data.num_frames == 32 and cfg.data.max_images_per_sample == 16


def test_images_per_sample_bound_holds_at_validation(tmp_path):
    import json

    from PIL import Image

    from vlm_train.config import DataConfig, SourceConfig
    from vlm_train.data.errors import TOO_LONG
    from vlm_train.data.load import load_dataset

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{"id": f"n{n}", "image": ["a.png"] * n,
             "conversations": [{"from": "human", "value": "<image>\n" * n + "q"}, {"from": "gpt", "value": "a"}]}
            for n in (1, 3)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(train=[SourceConfig(str(tmp_path / "d.jsonl"), format="conversations")], max_images_per_sample=2,
                     max_error_fraction=1.0)
    r = load_dataset(cfg)
    assert [s.id for s in r.samples] == ["n1"]
    assert [(e.kind, e.line) for e in r.errors] == [(TOO_LONG, 2)] and "max_images_per_sample=2" in r.errors[0].reason


# ---- sections that build what they describe ------------------------------------------------
DS = {"zero2": "configs/deepspeed/zero2.json", "zero3": "configs/deepspeed/zero3.json", "offload": "configs/deepspeed/zero3_offload.json"}


@pytest.mark.parametrize("name", list(DS))
def test_deepspeed_dict_on_cpu(name, repo):
    from vlm_train.config import DeepSpeedConfig

    ds = DeepSpeedConfig(str(repo / DS[name])).build(cuda=False, dtype="float32")
    # fp32 on CPU: bf16 off, no fp16 section, offload buffers not pinned; the rest as written.
    assert ds["bf16"] == {"enabled": False} and "fp16" not in ds
    assert ds["zero_optimization"]["stage"] == (2 if name == "zero2" else 3)
    for k in ("offload_optimizer", "offload_param"):
        if name == "offload":
            assert ds["zero_optimization"][k] == {"device": "cpu", "pin_memory": False}
        else:
            assert k not in ds["zero_optimization"]
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # HF fills batch sizes from the trainer args


@pytest.mark.parametrize("name", list(DS))
def test_deepspeed_dict_on_gpu(name, repo):
    from vlm_train.config import DeepSpeedConfig

    ds = DeepSpeedConfig(str(repo / DS[name])).build(cuda=True, dtype="bfloat16")
    assert ds["bf16"] == {"enabled": True} and "fp16" not in ds
    if name == "offload":
        assert ds["zero_optimization"]["offload_param"]["pin_memory"] is True
    fp16 = DeepSpeedConfig(str(repo / DS[name])).build(cuda=True, dtype="float16")
    assert fp16["fp16"]["enabled"] is True and fp16["bf16"] == {"enabled": False}
    assert DeepSpeedConfig(str(repo / DS[name])).zero_stage == (2 if name == "zero2" else 3)


def test_no_deepspeed_is_ddp():
    from vlm_train.config import DeepSpeedConfig

    assert DeepSpeedConfig(None).build(cuda=True, dtype="bfloat16") is None and DeepSpeedConfig(None).zero_stage is None


def test_removed_and_dead_fields(repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError, match=r"model.trust_remote_code: unknown key"):
        load_config(BASE, ["model.trust_remote_code=false"])
    cfg = load_config(BASE, ["tools.crop=false", "tools.max_calls=3"])
    assert cfg.tools.call_limit == 0
    assert load_config(BASE, ["tools.max_calls=3"]).tools.call_limit == 3


@pytest.mark.parametrize("stages,message", [
    ("[eval, sft]", "eval comes once, last"),
    ("[sft, sft]", "listed twice"),
    ("[]", "empty"),
])
def test_bad_stage_lists(stages, message, repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError, match=message):
        load_config(BASE, [f"stages={stages}"])


def test_synthetic_and_train_sources_together_is_an_error(repo, monkeypatch, tmp_path):
    monkeypatch.chdir(repo)
    (tmp_path / "t.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"data.synthetic: is not used when data.train is given"):
        load_config(BASE, [f"data.train=[{{path: {tmp_path / 't.jsonl'}}}]"])
    load_config(BASE, [f"data.train=[{{path: {tmp_path / 't.jsonl'}}}]", "data.synthetic=null"])


def test_eval_stage_needs_an_eval_split(repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError, match=r"stages: eval needs an eval split"):
        load_config(BASE, ["stages=[sft, eval]", "data.synthetic.n_eval=0"])
    cfg = load_config(BASE, ["stages=[eval]"])
    assert cfg.evaluate and cfg.training_stages == []


def test_default_family_comes_from_the_registry(tmp_path):
    """A config without model.family gets the registry's default, which is registered."""
    from vlm_train.config import ModelConfig

    assert ModelConfig().family == DEFAULT_FAMILY and DEFAULT_FAMILY in FAMILIES
