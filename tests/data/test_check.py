"""``vlm-train data check``: grouped problems with file:line, statistics, exit codes 0/1/2,
token lengths that match the HF processor's."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from vlm_train.data.check import TokenCounter, render_for_count
from vlm_train.data.cli import main
from vlm_train.data.formats import write
from vlm_train.data.synthetic import generate
from vlm_train.models import get_family


@pytest.fixture
def data(tmp_path):
    samples = generate(tmp_path, 20, seed=3, kind="mixed")
    path = tmp_path / "d.jsonl"
    write(samples, path, "conversations")
    return path


def _append(path, *records):
    with open(path, "a") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def test_clean_file_exits_0(data, capsys):
    assert main(["check", str(data), "--image-root", str(data.parent)]) == 0
    out = capsys.readouterr().out
    assert "problems: none" in out
    assert "samples: 20 usable (after repeats) of 20 read" in out
    assert "images per sample: mean 1.0, max 1 (total 20)" in out
    assert "tool calls per sample:" in out and "result: OK" in out


def test_problems_grouped_with_lines_and_exit_1(data, capsys):
    _append(
        data,
        {
            "id": "m1",
            "image": "gone.png",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        },
    )
    _append(data, "{broken")
    _append(
        data,
        {
            "id": "m2",
            "image": "gone2.png",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        },
    )
    assert main(["check", str(data), "--image-root", str(data.parent)]) == 1
    out = capsys.readouterr().out
    assert "problems: 3" in out
    assert "  missing_media (2):" in out and "  bad_json (1):" in out
    assert f"{data}:21 [m1]: gone.png: file not found" in out
    assert f"{data}:22: malformed JSON" in out
    assert "result: FAIL: 3 problems in 23 records = 13.0%" in out
    # the same problems within a looser limit pass
    assert main(["check", str(data), "--image-root", str(data.parent), "--max-error-fraction", "0.2"]) == 0


@pytest.mark.parametrize(
    "argv",
    [[], ["check"], ["check", "nope.jsonl"], ["check", "x", "--max-error-fraction"], ["bogus"], ["check", "cfg.yaml"]],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2


def test_bad_image_root_and_fraction(data):
    assert main(["check", str(data), "--image-root", str(data.parent / "nowhere")]) == 2
    assert main(["check", str(data), "--image-root", str(data.parent), "--max-error-fraction", "2"]) == 2


@pytest.fixture
def tiny_proc_dir(tmp_path_factory):
    from vlm_train.models.internvl.tiny import build_processor

    d = tmp_path_factory.mktemp("proc")
    build_processor(d, 64)
    return d


def test_config_check_with_token_lengths(data, tiny_proc_dir, tmp_path, capsys):
    cfg = {
        "model": {"family": "internvl", "path": str(tiny_proc_dir)},
        "data": {"train": [{"path": str(data)}], "max_error_fraction": 0.0},
        "deepspeed": {"config": None},
        "run": {"storage_path": str(tmp_path / "runs")},
        "sft": {"max_length": 60},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "token length: p50" in out and "internvl: text tokens + 18 per image" in out
    assert "over max_length 60:" in out
    broken = {**cfg, "data": {**cfg["data"], "bogus_key": 1}}
    path.write_text(yaml.safe_dump(broken))
    assert main(["check", str(path)]) == 2
    assert "bogus_key" in capsys.readouterr().err


def test_config_with_synthetic_data(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"data": {"synthetic": {"n": 6, "kind": "toolqa"}}, "deepspeed": {"config": None}}))
    assert main(["check", str(path), "--work-dir", str(tmp_path / "w"), "--no-tokens"]) == 0
    out = capsys.readouterr().out
    assert "samples: 6 usable" in out and "tool calls per sample: mean 1.0" in out


def test_token_count_equals_hf_processor(tiny_proc_dir, tmp_path):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_proc_dir, local_files_only=True)
    counter = TokenCounter(proc.tokenizer, proc.image_seq_length + 2, 8, "", get_family("internvl").chat)
    for s in generate(tmp_path, 5, seed=9):
        msgs = [
            {
                "role": m.role,
                "content": [
                    {"type": "image"} if p.type == "image" else {"type": "text", "text": p.text} for p in m.content
                ],
            }
            for m in s.messages
        ]
        text = proc.apply_chat_template(msgs, tokenize=False)
        image = Image.open(tmp_path / s.messages[0].content[0].media)
        ids = proc(text=text, images=[image], return_tensors="pt")["input_ids"]
        # our count renders the media-free text the same way and adds the image span
        assert counter(s) == ids.shape[1], render_for_count(s)
