"""Every format round-trips (file -> canonical -> file) on files written here, and reads into
the canonical shape the families expect (typed parts, real crop calls, targets, regions)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from vlm_train.data import formats
from vlm_train.data.errors import DataIssue
from vlm_train.data.formats import ReadOptions, detect_format
from vlm_train.data.formats.jsonio import read_records
from vlm_train.data.sample import Box, Sample
from vlm_train.data.synthetic import generate
from vlm_train.models import get_family

A3 = (
    "<think>\nI need to look at the person on the far left.\n{Crop person [0.00, 141.43, 79.23, 480.00]}\n"
    "In the crop I can see a dark jacket.\n</think>\n\n<answer>The person is wearing a dark jacket.</answer>"
)
OVIS_RECORDS = [
    {
        "id": "s1",
        "image": "coco/a.jpg",
        "conversations": [
            {"from": "system", "value": "Answer briefly."},
            {"from": "human", "value": "<image>\nWhat is the person wearing?"},
            {"from": "gpt", "value": A3},
        ],
    },
    {
        "id": 7,
        "image": ["a.png", "b.png"],
        "conversations": [
            {"from": "human", "value": "Frame1: <image>\nFrame2: <image>\nCompare."},
            {"from": "gpt", "value": "They match."},
            {"from": "human", "value": "Sure?"},
            {"from": "gpt", "value": "Yes."},
        ],
        "source_dataset": "mine",
    },
    {
        "video": "clip.mp4",
        "conversations": [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "Nothing."}],
    },
]


def _read(path, fmt="auto", **kw) -> tuple[list[Sample], list[DataIssue]]:
    samples, issues = [], []
    for x in formats.read(path, fmt, ReadOptions(**kw)):
        (issues if isinstance(x, DataIssue) else samples).append(x)
    return samples, issues


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _lines(path: Path) -> list:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_ovis_jsonl_reads_canonical_and_round_trips(tmp_path):
    src = _jsonl(tmp_path / "ovis.jsonl", OVIS_RECORDS)
    assert detect_format(src) == "conversations"
    samples, issues = _read(src)
    assert not issues
    s1, s2, s3 = samples
    assert [m.role for m in s1.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert [p.type for p in s1.messages[1].content] == ["image", "text"]
    assert s1.messages[1].content[1].text == "What is the person wearing?"
    call = s1.messages[2].content[-1]
    assert (call.type, call.tool, call.label, call.box) == (
        "tool_call",
        "crop",
        "person",
        Box(0.0, 141.43, 79.23, 480.0),
    )
    assert s1.messages[3].content[0].source == "coco/a.jpg" and s1.messages[3].content[0].box == call.box
    assert s1.messages[4].content[0].text.startswith("\nIn the crop")
    assert [p.media for p in s2.messages[0].content if p.type == "image"] == ["a.png", "b.png"]
    assert s2.id == "7" and s3.id == "ovis:3"
    assert s3.messages[0].content[0].type == "video"
    assert all(s.meta["line"] == i + 1 for i, s in enumerate(samples))
    out = tmp_path / "out.jsonl"
    formats.write(samples, out, "conversations")
    assert _lines(out) == OVIS_RECORDS


def test_ovis_wrapped_and_json_list(tmp_path):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"conversations": OVIS_RECORDS}, indent=2))
    listed = tmp_path / "internvl.json"
    listed.write_text(json.dumps(OVIS_RECORDS, indent=2))
    for src in (wrapped, listed):
        samples, issues = _read(src)
        assert not issues and len(samples) == 3
        # items keep the line they start on, for error messages
        text = src.read_text().splitlines()
        assert '"id": "s1"' in text[samples[0].meta["line"]] or '"id": "s1"' in text[samples[0].meta["line"] - 1]
        out = tmp_path / f"out_{src.stem}.json"
        formats.write(samples, out, "conversations")
        assert json.loads(out.read_text()) == OVIS_RECORDS


def test_conversations_meta_round_trip_and_repeat(tmp_path):
    base = tmp_path / "in"
    (base / "ann").mkdir(parents=True)
    _jsonl(base / "ann" / "a.jsonl", OVIS_RECORDS[:2])
    _jsonl(base / "ann" / "b.jsonl", OVIS_RECORDS[2:])
    meta = {
        "ds_a": {"root": "imgs_a", "annotation": "ann/a.jsonl", "data_augment": False, "repeat_time": 2, "length": 2},
        "ds_b": {
            "root": str(tmp_path / "elsewhere"),
            "annotation": "ann/b.jsonl",
            "data_augment": True,
            "repeat_time": 0.5,
            "length": 1,
        },
    }
    (base / "meta.json").write_text(json.dumps(meta))
    assert detect_format(base / "meta.json") == "conversations_meta"
    # ds_b's absolute root is outside the meta file's folder: the config must list it.
    samples, issues = _read(base / "meta.json", roots=(str(tmp_path / "elsewhere"),))
    assert not issues
    assert [(s.meta["dataset"], s.meta["repeat"]) for s in samples] == [("ds_a", 2), ("ds_a", 2), ("ds_b", 0.5)]
    assert samples[0].meta["image_root"] == str((base / "imgs_a").resolve())
    out = tmp_path / "out" / "meta.json"
    formats.write(samples, out, "conversations_meta")
    got = json.loads(out.read_text())
    assert set(got) == {"ds_a", "ds_b"}
    for name, ann in (("ds_a", "a.jsonl"), ("ds_b", "b.jsonl")):
        assert Path(out.parent / got[name]["root"]).resolve() == (base / meta[name]["root"]).resolve()
        assert {k: got[name][k] for k in ("data_augment", "repeat_time", "length")} == {
            k: meta[name][k] for k in ("data_augment", "repeat_time", "length")
        }
        assert _lines(out.parent / got[name]["annotation"]) == _lines(base / "ann" / ann)


def test_toolqa_one_sample_per_question_and_round_trip(tmp_path):
    rec = {
        "image_path": "coco/train2017/000000580837.jpg",
        "QnA": [
            {"Q": "What is the visible clothing of the person on the far left?", "A3": A3},
            {
                "Q": "Where is the dog?",
                "A3": "<think>\n<tool_call>Crop [10, 20, 30, 40]</tool_call>\n</think>\n\n<answer>left</answer>",
                "A1": "left",
            },
        ],
        "split": "train",
    }
    src = _jsonl(tmp_path / "qa.jsonl", [rec, {**rec, "image_path": "other.jpg"}])
    assert detect_format(src) == "toolqa"
    samples, issues = _read(src)
    assert not issues and len(samples) == 4
    s = samples[1]
    assert s.messages[0].content[1].text == "Where is the dog?"
    assert s.regions[0].box == Box(10, 20, 30, 40)
    assert samples[0].regions[0].phrase == "person"
    assert s.meta["answer"] == "left"
    out = tmp_path / "out.jsonl"
    formats.write(samples, out, "toolqa")
    assert _lines(out) == _lines(src)


def test_refcoco_round_trip_uses_family_text(tmp_path):
    recs = [
        {
            "image": "coco/x.jpg",
            "sent": "the red car on the left",
            "bbox": [10.5, 20, 110, 220.25],
            "width": 640,
            "height": 480,
        },
        {"image": "coco/y.jpg", "sent": "man", "bbox": [0, 0, 5, 5], "width": 10, "height": 10, "id": 3, "ref_id": 99},
    ]
    src = _jsonl(tmp_path / "ref.jsonl", recs)
    assert detect_format(src) == "refcoco"
    samples, issues = _read(src)
    assert not issues
    s = samples[0]
    assert s.targets[0].phrase == "the red car on the left" and s.image_sizes == [(640, 480)]
    # Without a family the answer is the neutral pixel JSON; with one, the family's text.
    assert s.messages[1].content[0].text == '{"bbox_2d": [10, 20, 110, 220], "label": "the red car on the left"}'
    fam = get_family("internvl")
    internvl = _read(src, answer=fam.grounding_answer, prompt=fam.grounding_prompt)[0][0]
    assert internvl.messages[1].content[0].text == "<ref>the red car on the left</ref><box>[[16, 42, 172, 459]]</box>"
    out = tmp_path / "out.jsonl"
    formats.write(samples, out, "refcoco")
    assert _lines(out) == recs
    custom, _ = _read(src, answer=lambda p, b, w, h: f"<ref>{p}</ref><box>{b.x1}</box>", prompt=lambda p: f"find {p}")
    assert custom[0].messages[0].content[1].text == "find the red car on the left"
    assert custom[0].messages[1].content[0].text == "<ref>the red car on the left</ref><box>10.5</box>"


def test_trl_rows_round_trip(tmp_path):
    call = '<tool_call>{"name": "crop", "arguments": {"bbox_2d": [1, 2, 30, 40]}}</tool_call>'
    rows = [
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "sys"}]},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}, {"type": "image"}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"Look {call} there."}]},
            ],
            "images": ["a.png", "b.png"],
        }
    ]
    src = _jsonl(tmp_path / "trl.jsonl", rows)
    assert detect_format(src) == "trl"
    samples, issues = _read(src)
    assert not issues
    roles = [m.role for m in samples[0].messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert samples[0].messages[2].content[-1].box == Box(1, 2, 30, 40)
    assert [p.media for p in samples[0].messages[1].content if p.type == "image"] == ["a.png", "b.png"]
    out = tmp_path / "out.jsonl"
    formats.write(samples, out, "trl")
    assert _lines(out) == rows


def test_trl_openai_tool_calls_and_string_content(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "<image>\nWhere?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "crop", "arguments": {"bbox_2d": [0, 0, 4, 4]}}}
                    ],
                },
                {"role": "tool", "content": [{"type": "image"}]},
                {"role": "assistant", "content": "There."},
            ],
            "images": ["a.png", {"path": "crop.png"}],
        }
    ]
    samples, issues = _read(_jsonl(tmp_path / "t.jsonl", rows), "trl")
    assert not issues
    m = samples[0].messages
    assert [x.role for x in m] == ["user", "assistant", "tool", "assistant"]
    assert m[1].content[-1].box == Box(0, 0, 4, 4)
    assert m[2].content[0].type == "tool_response" and m[2].content[0].media == "crop.png"


def test_canonical_round_trip_and_cross_format(tmp_path):
    samples = generate(tmp_path, 12, seed=1, kind="mixed")
    src = tmp_path / "c.jsonl"
    formats.write(samples, src, "canonical")
    assert detect_format(src) == "canonical"
    back, issues = _read(src)
    assert not issues
    strip = lambda d: {**d, "meta": {k: v for k, v in d["meta"].items() if k not in ("source", "line", "image_root")}}  # noqa: E731
    assert [strip(s.to_dict()) for s in back] == [s.to_dict() for s in samples]
    # canonical -> ovis -> trl -> canonical keeps every message and call
    formats.write(back, tmp_path / "o.jsonl", "conversations")
    via_ovis, _ = _read(tmp_path / "o.jsonl")
    formats.write(via_ovis, tmp_path / "t.jsonl", "trl")
    via_trl, _ = _read(tmp_path / "t.jsonl")
    assert [
        [(m.role, [(p.type, p.text, p.media, p.box, p.source) for p in m.content]) for m in s.messages] for s in via_trl
    ] == [
        [(m.role, [(p.type, p.text, p.media, p.box, p.source) for p in m.content]) for m in s.messages] for s in samples
    ]


def test_cli_convert_and_synth(tmp_path, capsys):
    from vlm_train.data.cli import main

    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "s"),
                "--n",
                "4",
                "--seed",
                "2",
                "--format",
                "conversations",
                "--kind",
                "toolqa",
            ]
        )
        == 0
    )
    src = tmp_path / "s" / "data_conversations.jsonl"
    assert len(_lines(src)) == 4
    out = tmp_path / "s" / "qa.jsonl"
    assert main(["convert", str(src), str(out), "--to", "toolqa"]) == 0
    assert "{Crop " in _lines(out)[0]["QnA"][0]["A3"]
    back = tmp_path / "s" / "back.jsonl"
    assert main(["convert", str(out), str(back), "--to", "conversations"]) == 0
    assert [r["conversations"] for r in _lines(back)] == [r["conversations"] for r in _lines(src)]
    assert main(["convert", str(tmp_path / "missing.jsonl"), str(back), "--to", "conversations"]) == 2
    assert main(["convert", str(src), str(back), "--to", "nope"]) == 2


@pytest.mark.parametrize("fmt", ["conversations", "toolqa", "refcoco", "trl", "canonical", "conversations_meta"])
def test_synth_writes_every_format_readable(tmp_path, fmt):
    from vlm_train.data.cli import main

    assert main(["synth", "--out", str(tmp_path), "--n", "3", "--format", fmt]) == 0
    path = tmp_path / ("meta.json" if fmt == "conversations_meta" else f"data_{fmt}.jsonl")
    samples, issues = _read(path)
    assert not issues and len(samples) == 3
    assert all(s.targets or fmt not in ("refcoco", "canonical") for s in samples)


def test_json_list_bad_item_and_undetectable(tmp_path):
    p = tmp_path / "l.json"
    p.write_text(
        '[\n {"id": "a", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},\n {"id": "b", oops}\n]'
    )
    samples, issues = _read(p)
    assert [s.id for s in samples] == ["a"]
    assert [(i.kind, i.line) for i in issues] == [("bad_json", 3)]
    q = _jsonl(tmp_path / "q.jsonl", [{"foo": 1}])
    samples, issues = _read(q)
    assert not samples and "cannot tell the data format" in issues[0].reason and "['foo']" in issues[0].reason


def test_prefetch_keeps_file_order(tmp_path):
    from vlm_train.config import DataConfig, SourceConfig
    from vlm_train.data.load import load_dataset

    samples = generate(tmp_path, 12, seed=4)
    for s in samples[::3]:
        s.messages[0].content[0].media = f"missing_{s.id}.png"
    write_path = tmp_path / "d.jsonl"
    formats.write(samples, write_path, "conversations")
    cfg = DataConfig(train=[SourceConfig(str(write_path))], max_error_fraction=1.0)
    one = load_dataset(cfg, workers=1)
    four = load_dataset(cfg, workers=4)
    assert [e.line for e in one.errors] == [e.line for e in four.errors] == [1, 4, 7, 10]
    assert [s.id for s in one.samples] == [s.id for s in four.samples]


def test_trl_parquet_with_embedded_images(tmp_path):
    """HF datasets exports: Parquet rows whose images are {"bytes", "path"} structs."""
    import io

    from datasets import Dataset, Features, Sequence, Value
    from datasets import Image as HFImage
    from PIL import Image

    from vlm_train.config import DataConfig, SourceConfig
    from vlm_train.data.load import load_dataset

    def png(colour) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (12, 10), colour).save(buf, format="PNG")
        return buf.getvalue()

    rows = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "text": None}, {"type": "text", "text": f"Colour {i}?"}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": c}]},
            ],
            "images": [{"bytes": png(c), "path": None}],
        }
        for i, c in enumerate(["red", "blue", "red"])
    ]
    item = {"type": Value("string"), "text": Value("string")}
    features = Features({"messages": [{"role": Value("string"), "content": [item]}], "images": Sequence(HFImage())})
    path = tmp_path / "train.parquet"
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    assert detect_format(path) == "trl"
    r = load_dataset(DataConfig(train=[SourceConfig(str(path))]))
    assert [s.meta["line"] for s in r.samples] == [1, 2, 3]
    media = [s.messages[0].content[0].media for s in r.samples]
    assert media[0] == media[2] != media[1]  # same bytes, one file
    assert Image.open(media[1]).getpixel((0, 0)) == (0, 0, 255)
    assert r.samples[0].image_sizes == [(12, 10)]
    assert sorted(p.name for p in (tmp_path / "train.images").iterdir()) == sorted({Path(m).name for m in media})


def test_config_format_names_are_the_readers():
    """The config's static list of format names is the reader registry plus auto-detection, and
    none is named after a model family (any family trains on any file layout)."""
    from typing import get_args

    from vlm_train.config import DataFormat
    from vlm_train.models import FAMILIES

    assert list(get_args(DataFormat)) == ["auto", *formats.FORMATS]
    assert not [f for f in formats.FORMATS for fam in FAMILIES if fam.split("_")[0] in f]


@pytest.mark.parametrize("layout", ["jsonl", "list"])
def test_hostile_nesting_never_collects_garbage_at_depth(tmp_path, layout):
    # 100,000 '[' take the C decoder to the recursion limit; a collection that started down there
    # would run finalizers that fail as unraisable errors. Decoding 100,000 nested lists would
    # trigger ~140 generation-0 collections; with the collector paused there are none.
    deep = "[" * 100_000
    f = tmp_path / "deep.json"
    f.write_text('{"id": "a"}\n' + deep + "\n" if layout == "jsonl" else '[{"id": "a"}, ' + deep + "]")
    starts: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            starts.append(info["generation"])

    gc.collect()  # the allocation count starts from zero, so only the read itself could trigger one
    gc.callbacks.append(count)
    try:
        recs = list(read_records(f))
    finally:
        gc.callbacks.remove(count)
    assert recs[0] == (1, {"id": "a"})
    assert isinstance(recs[1], DataIssue) and "nested too deeply" in recs[1].reason
    assert starts == []
    assert gc.isenabled()
