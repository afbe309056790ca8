"""The shipped Ovis2.5 job configs load and validate (paths pointed at local stand-ins)."""

from __future__ import annotations

import json

import pytest

from vlm_train.config import load_config


@pytest.mark.parametrize(
    ("name", "lora", "zero", "nodes"),
    [("configs/ovis2_5/2b_lora_sft.yaml", True, 2, 1), ("configs/ovis2_5/9b_full_sft.yaml", False, 3, 2)],
)
def test_real_checkpoint_configs(repo, tiny_dir, tmp_path, name, lora, zero, nodes, monkeypatch):
    monkeypatch.chdir(repo)
    assert (repo / name).read_text().startswith("# ")
    assert "python -m jobs.sft " + name in (repo / name).read_text().split("\nmodel:")[0]
    data = tmp_path / "train.jsonl"
    data.write_text("")
    src = f"[{{path: {data}, image_root: {tmp_path}}}]"
    cfg = load_config(repo / name, [f"model.path={tiny_dir}", f"data.train={src}", f"data.eval={src}"])
    assert cfg.model.family == "ovis2_5" and cfg.model.lora.enabled is lora
    assert cfg.model.max_pixels == 1792 * 1792
    assert json.loads(open(cfg.deepspeed.config).read())["zero_optimization"]["stage"] == zero
    assert cfg.cluster.pool == "h100-80gb" and cfg.cluster.nodes == nodes
    assert cfg.sft["max_length"] == 6000 and cfg.model.dtype == "bfloat16"  # bf16 training follows model.dtype


def test_debug_config(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config(repo / "configs/debug/ovis2_5_tiny_sft.yaml")
    assert cfg.model.family == "ovis2_5" and cfg.model.path == "tiny"
    assert cfg.model.lora.enabled and cfg.cluster.pool == "local-cpu"
    assert "zero3" in cfg.deepspeed.config
