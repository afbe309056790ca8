"""`vlm-train export`: official layout, plain from_pretrained, same logits, LoRA merged, bad sources."""

from __future__ import annotations

import json

import pytest
import torch

import vlm_train  # noqa: F401  (registers Ovis2.5 with the Auto classes)
from tests.infer.helpers import grounding_batch, logits, trained_run
from vlm_train.cli import main as cli

OFFICIAL = {"internvl": "InternVLForConditionalGeneration", "ovis2_5": "Ovis2_5"}


def plain_load(family: str, path):
    """What a user (or a serving engine's HF path) does: the Auto classes, no remote code."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    auto = AutoModelForImageTextToText if family == "internvl" else AutoModelForCausalLM
    model = auto.from_pretrained(path, dtype=torch.float32, trust_remote_code=False).eval()
    if family == "internvl":
        return model, AutoProcessor.from_pretrained(path, trust_remote_code=False)
    from vlm_train.models.ovis2_5.processor import Ovis2_5Processor

    return model, Ovis2_5Processor.from_pretrained(path)


@pytest.mark.parametrize("family", ["internvl", "ovis2_5"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_export_loads_plainly_with_same_logits(family, lora, tiny_models, tmp_path, capsys):
    run, trained = trained_run(tmp_path, family, tiny_models[family], lora=lora)
    out = tmp_path / "export"
    args = [str(run), str(out), "--dtype", "float32"] + (["--merge-lora"] if lora else [])
    if not lora:
        args += ["--max-shard-size", "200KB"]  # small shards: the sharded layout with its index
    assert cli(["export", *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    files = set(summary["files"])
    assert summary["architectures"] == [OFFICIAL[family]]
    assert {"config.json", "generation_config.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pth"))], files
    assert not any("adapter" in f for f in files)  # merged: a full model, no adapter left
    if not lora:
        index = json.loads((out / "model.safetensors.index.json").read_text())
        shards = set(index["weight_map"].values())
        assert len(shards) > 1 and shards <= files
    model, processor = plain_load(family, out)
    assert type(model).__name__ == OFFICIAL[family]
    batch = grounding_batch(family, processor, tmp_path)
    torch.testing.assert_close(logits(model, batch), logits(trained, batch), rtol=1e-4, atol=1e-4)
    # Export in bf16: the dtype recorded and the weights converted.
    assert cli(["export", str(out), str(tmp_path / "bf16")]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "bfloat16"


def test_bad_sources_are_clear_errors(tiny_internvl, tmp_path, capsys):
    run, _ = trained_run(tmp_path, "internvl", tiny_internvl, lora=True)
    adapter = run / "models" / "sft" / "adapter"
    # An adapter needs --merge-lora; nothing is written.
    assert cli(["export", str(run), str(tmp_path / "o1")]) == 2
    assert "LoRA adapter; pass --merge-lora" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists()
    # An adapter whose base is gone.
    meta = json.loads((adapter / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(meta))
    assert cli(["export", str(adapter), str(tmp_path / "o2"), "--merge-lora"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "gone") in err and "cannot be used without its base" in err
    # ... unless --base names it.
    assert cli(["export", str(adapter), str(tmp_path / "o2"), "--merge-lora", "--base", str(tiny_internvl)]) == 0
    capsys.readouterr()
    # A non-empty output is never overwritten silently.
    assert cli(["export", str(tiny_internvl), str(tmp_path / "o2")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "o2" / "config.json").is_file()
    # Not a model at all; a run without a finished stage.
    assert cli(["export", str(tmp_path), str(tmp_path / "o3")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    (run / "models" / "sft" / "MODEL").unlink()
    assert cli(["export", str(run), str(tmp_path / "o3")]) == 2
    assert "no stage of ['sft'] has a final model" in capsys.readouterr().err
