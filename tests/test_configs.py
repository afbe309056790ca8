"""Every shipped YAML loads and validates (real-checkpoint paths replaced by a tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlm_train.config import load_config
from vlm_train.launch.plan import describe

CONFIGS = sorted(p for p in Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(p.parents[1])) for p in CONFIGS])
def test_shipped_config_is_valid(path, repo, monkeypatch, tmp_path, tiny_internvl):
    monkeypatch.chdir(repo)
    text = path.read_text()
    assert text.startswith("#") and "python -m jobs." in text.split("\n\n")[0], "config must open with its launch command"
    raw = yaml.safe_load(text)
    overrides = []
    if raw.get("model", {}).get("path", "tiny") != "tiny":
        overrides.append(f"model.path={tiny_internvl}")  # real checkpoints are not on this machine
    for split in ("train", "eval"):
        n = len(raw.get("data", {}).get(split, []))
        if n:
            for i in range(n):
                (tmp_path / f"{split}{i}.jsonl").write_text("")
            items = ", ".join(f"{{path: {tmp_path / f'{split}{i}.jsonl'}, image_root: {tmp_path}}}" for i in range(n))
            overrides.append(f"data.{split}=[{items}]")
    sets = raw.get("evaluation", {}).get("sets", [])
    if any("path" in s for s in sets):  # evaluation data is not on this machine either
        (tmp_path / "set.jsonl").write_text("")
        items = ", ".join(f"{{name: '{s['name']}', path: {tmp_path / 'set.jsonl'}}}" for s in sets)
        overrides.append(f"evaluation.sets=[{items}]")
    cfg = load_config(path, overrides)
    plan = describe(cfg)
    assert plan["world_size"] >= 1 and list(plan["stages"]) == cfg.training_stages
    assert all(s["global_batch_size"] >= 1 for s in plan["stages"].values())
