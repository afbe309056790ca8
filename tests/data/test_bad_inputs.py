"""The bad-input table of issue 3: each input gets its problem class and a message naming
where it is; under ``on_error: skip`` none of them stops loading (the good sample survives),
under ``raise`` each stops it with the same location."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_train.config import DataConfig, SourceConfig
from vlm_train.data import errors as E
from vlm_train.data.errors import DataError
from vlm_train.data.load import load_dataset


def _conv(image, user="<image>\nWhat is it?", answer="A square.", **kw):
    rec = {
        "id": kw.pop("id", "x"),
        "conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": answer}],
        **kw,
    }
    if image is not None:
        rec["image"] = image
    return json.dumps(rec)


GOOD = _conv("ok.png", id="good")

# (case, lines of the data file after the good line, expected class, text in the message)
CASES = [
    ("missing image", [_conv("nope.png")], E.MISSING_MEDIA, "nope.png: file not found"),
    ("truncated image", [_conv("truncated.png")], E.CORRUPT_MEDIA, "truncated.png: cannot decode"),
    ("corrupt bytes", [_conv("garbage.png")], E.CORRUPT_MEDIA, "garbage.png: cannot read image header"),
    ("zero-size image", [_conv("empty.png")], E.CORRUPT_MEDIA, "empty.png: empty file"),
    ("20000x20000 header", [_conv("huge.png")], E.TOO_LARGE, "huge.png"),
    ("path traversal", [_conv("../../etc/passwd")], E.OUTSIDE_ROOT, "outside the image roots"),
    ("absolute path outside", [_conv("/etc/hostname")], E.OUTSIDE_ROOT, "outside the image roots"),
    ("symlink escaping", [_conv("link.png")], E.OUTSIDE_ROOT, "secret.png, outside the image roots"),
    ("malformed JSON", ['{"id": "y", "image": '], E.BAD_JSON, "malformed JSON"),
    (
        "unknown role",
        [json.dumps({"image": "ok.png", "conversations": [{"from": "robot", "value": "<image>\nhi"}]})],
        E.BAD_ROLE,
        "unknown role 'robot'",
    ),
    (
        "no assistant turn",
        [json.dumps({"image": "ok.png", "conversations": [{"from": "human", "value": "<image>\nhi"}]})],
        E.NO_ASSISTANT,
        "no assistant turn",
    ),
    (
        "placeholders != images",
        [_conv("ok.png", user="<image>\n<image>\nTwo?")],
        E.PLACEHOLDER_MISMATCH,
        "2 <image> placeholders but 1 image",
    ),
    ("crop box x2 < x1", [_conv("ok.png", answer="{Crop a [30, 2, 10, 20]} done")], E.BAD_BOX, "inverted box"),
    (
        "crop box outside image",
        [_conv("ok.png", answer="{Crop a [10, 2, 90, 20]} done")],
        E.BAD_BOX,
        "outside the 40x30 image",
    ),
    ("100,000 '[' on a line", ["[" * 100_000], E.BAD_JSON, "nested too deeply"),
    (
        "object nested 50,000 deep",
        ['{"id": "y", "image": "ok.png", "x": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001],
        E.BAD_JSON,
        "nested too deeply",
    ),
    (
        "non-numeric coordinates",
        [_conv("ok.png", answer="{Crop a [10, two, 30, 20]} done")],
        E.BAD_BOX,
        "non-numeric box coordinate 'two'",
    ),
]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join([GOOD, *lines]) + "\n")
    return p


def _cfg(path, root, on_error="skip", **kw) -> DataConfig:
    return DataConfig(
        train=[SourceConfig(str(path), format="conversations", image_root=str(root))],
        on_error=on_error,
        max_error_fraction=1.0,
        **kw,
    )


@pytest.mark.parametrize("case,lines,kind,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_skip_and_raise(tmp_path, root, case, lines, kind, text):
    path = _write(tmp_path, lines)
    r = load_dataset(_cfg(path, root))
    assert [s.id for s in r.samples] == ["good"]
    assert len(r.errors) == 1, r.errors
    issue = r.errors[0]
    assert issue.kind == kind and text in issue.reason, str(issue)
    assert issue.source == str(path) and issue.line == 2
    assert str(issue).startswith(f"{path}:2")
    with pytest.raises(DataError, match=f"{path}:2") as ei:
        load_dataset(_cfg(path, root, on_error="raise"))
    assert ei.value.issues[0].kind == kind


def test_refcoco_box_problems(tmp_path, root):
    rows = [
        {"image": "ok.png", "sent": "x", "bbox": [0, 0, 10, 10], "width": 40, "height": 30},
        {"image": "ok.png", "sent": "x", "bbox": [0, 0, 50, 10], "width": 40, "height": 30},
        {"image": "ok.png", "sent": "x", "bbox": [20, 0, 10, 10], "width": 40, "height": 30},
        {"image": "ok.png", "sent": "x", "bbox": [0, "a", 10, 10], "width": 40, "height": 30},
        {"image": "ok.png", "sent": "x", "bbox": [0, 0, 10, 10], "width": 400, "height": 300},
    ]
    p = tmp_path / "ref.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = load_dataset(DataConfig(train=[SourceConfig(str(p), image_root=str(root))], max_error_fraction=1.0))
    assert len(r.samples) == 1
    got = [(e.line, e.kind) for e in r.errors]
    assert got == [(2, E.BAD_BOX), (3, E.BAD_BOX), (4, E.BAD_BOX), (5, E.BAD_FIELD)]
    assert "outside the 40x30 image" in r.errors[0].reason
    assert "the data says 400x300 but the file is 40x30" in r.errors[3].reason


def test_invalid_utf8_names_the_line(tmp_path, root):
    p = tmp_path / "data.jsonl"
    p.write_bytes(GOOD.encode() + b"\n" + b'{"id": "\xff\xfe"}\n')
    r = load_dataset(_cfg(p, root))
    assert [(e.kind, e.line) for e in r.errors] == [(E.BAD_ENCODING, 2)]
    assert [s.id for s in r.samples] == ["good"]


def test_invalid_utf8_in_json_list(tmp_path, root):
    p = tmp_path / "data.json"
    p.write_bytes(b"[\n" + GOOD.encode() + b',\n{"id": "\xff"}\n]')
    cfg = DataConfig(train=[SourceConfig(str(p), image_root=str(root))], max_error_fraction=1.0)
    with pytest.raises(DataError, match="no usable sample"):
        load_dataset(cfg)
    from vlm_train.data.formats import read

    issues = list(read(p, "conversations"))
    assert [(i.kind, i.line) for i in issues] == [(E.BAD_ENCODING, 3)]


def test_empty_file(tmp_path, root):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    good = _write(tmp_path, [])
    cfg = DataConfig(
        train=[SourceConfig(str(empty), image_root=str(root)), SourceConfig(str(good), image_root=str(root))],
        max_error_fraction=1.0,
    )
    r = load_dataset(cfg)
    assert [(e.kind, e.source) for e in r.errors] == [(E.EMPTY_FILE, str(empty))]
    assert len(r.samples) == 1


def test_too_long_sample(tmp_path, root):
    long_answer = "word " * 200
    p = _write(tmp_path, [_conv("ok.png", answer=long_answer, id="long")])
    r = load_dataset(
        _cfg(p, root),
        length_fn=lambda s: sum(len((pt.text or "").split()) for m in s.messages for pt in m.content),
        max_length=50,
    )
    assert [s.id for s in r.samples] == ["good"]
    assert [(e.kind, e.line, e.sample_id) for e in r.errors] == [(E.TOO_LONG, 2, "long")]
    assert "over max_length 50" in r.errors[0].reason


def test_small_pixel_cap_from_config(tmp_path, root):
    p = _write(tmp_path, [])
    cfg = DataConfig(train=[SourceConfig(str(p), image_root=str(root))], max_image_pixels=1000, max_error_fraction=1.0)
    with pytest.raises(DataError) as ei:
        load_dataset(cfg)
    assert (
        ei.value.issues[0].kind == E.TOO_LARGE
        and "40x30 = 1200 pixels, over the 1000-pixel cap" in ei.value.issues[0].reason
    )


def test_all_bad_lines_together_do_not_stop_skip(tmp_path, root):
    lines = [x for _, ls, _, _ in CASES for x in ls]
    p = _write(tmp_path, lines)
    r = load_dataset(_cfg(p, root))
    assert [s.id for s in r.samples] == ["good"]
    assert [e.kind for e in r.errors] == [k for _, _, k, _ in CASES]
    assert [e.line for e in r.errors] == list(range(2, 2 + len(CASES)))


def test_header_only_misses_truncation_but_not_bombs(tmp_path, root):
    p = _write(tmp_path, [_conv("truncated.png"), _conv("huge.png")])
    r = load_dataset(_cfg(p, root), decode=False)
    assert [s.id for s in r.samples] == ["good", "x"]  # the truncated file passes a header check
    assert [e.kind for e in r.errors] == [E.TOO_LARGE]


BAD_BOXES = [
    (["a", 1, 2, 3], "must be JSON numbers"),
    (["1", "2", "30", "20"], "must be JSON numbers"),
    ("1,2,3,4", "a box needs 4 numbers"),
    ("NaN", "non-finite box coordinate nan"),
    ("Infinity", "non-finite box coordinate inf"),
    ("-Infinity", "non-finite box coordinate -inf"),
    ("1e999", "non-finite box coordinate inf"),
    ({"x1": "1", "y1": 2, "x2": 3, "y2": 4}, "must be JSON numbers"),
    ({"x1": 1, "y1": 2, "x2": 3}, "needs keys x1, y1, x2, y2"),
    ([True, 1, 2, 3], "must be JSON numbers"),
]


def test_bad_box_values_in_canonical_rows(tmp_path, root):
    """Strings, NaN, Infinity, a box as a string: each a bad_box of its line, never a crash."""
    good = {"id": "good", "messages": [{"role": "user", "content": [{"type": "image", "media": "ok.png"}, {"type": "text", "text": "where?"}]},
                                       {"role": "assistant", "content": [{"type": "text", "text": "there"}]}],
            "targets": [{"phrase": "it", "box": [1, 2, 10, 20]}]}
    lines = [json.dumps(good)]
    for k, (box, _) in enumerate(BAD_BOXES):
        row = json.loads(json.dumps(good))
        row["id"] = f"bad{k}"
        raw = json.dumps(row)
        # NaN / Infinity / 1e999 are written raw: Python's json reads them as floats.
        raw_number = isinstance(box, str) and box[-1] in "yN9"
        lines.append(raw.replace("[1, 2, 10, 20]", f"[{box}, 2, 10, 20]" if raw_number else json.dumps(box)))
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = DataConfig(train=[SourceConfig(str(path), format="canonical", image_root=str(root))], on_error="skip",
                     max_error_fraction=1.0)
    r = load_dataset(cfg)
    assert [s.id for s in r.samples] == ["good"]
    assert [(e.kind, e.line) for e in r.errors] == [(E.BAD_BOX, k + 2) for k in range(len(BAD_BOXES))]
    for e, (_, text) in zip(r.errors, BAD_BOXES, strict=True):
        assert text in e.reason, (e, text)
    cfg.on_error = "raise"
    with pytest.raises(DataError, match=f"{path}:2 .*bad_box"):
        load_dataset(cfg)


def test_json_list_reads_in_linear_time(tmp_path):
    """A 6.4 MB JSON list took 39 s (every item's line counted from the file's start)."""
    import time

    from vlm_train.data.formats.jsonio import read_records

    items = [{"id": f"s{i}", "image": "ok.png", "conversations": [{"from": "human", "value": "x " * 40}]} for i in range(40_000)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(items, indent=1))
    assert path.stat().st_size > 6_400_000
    t = time.perf_counter()
    got = list(read_records(path))
    took = time.perf_counter() - t
    assert len(got) == 40_000
    text = path.read_text().splitlines()
    assert all('"s39999"' in text[got[-1][0]] or '"s39999"' in text[got[-1][0] - 1] for _ in [0])
    # Quadratic is ~40 s here; linear well under a second. The bound leaves room for a busy machine.
    assert took < 8, f"{took:.1f} s to read {path.stat().st_size / 1e6:.1f} MB"
