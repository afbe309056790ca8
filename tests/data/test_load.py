"""load_dataset: synthetic splits, sources of every kind, on_error and max_error_fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_train.config import DataConfig, SourceConfig, SyntheticConfig
from vlm_train.data.errors import BAD_JSON, MISSING_MEDIA, DataError
from vlm_train.data.formats import write
from vlm_train.data.load import load_dataset
from vlm_train.data.synthetic import generate


def test_synthetic_splits_are_disjoint_and_absolute(tmp_path):
    cfg = DataConfig(synthetic=SyntheticConfig(n=10, n_eval=6, seed=4))
    tr = load_dataset(cfg, "train", work_dir=tmp_path)
    ev = load_dataset(cfg, "eval", work_dir=tmp_path)
    assert tr.stats["samples"] == 10 and ev.stats["samples"] == 6
    paths_tr = {s.messages[0].content[0].media for s in tr.samples}
    paths_ev = {s.messages[0].content[0].media for s in ev.samples}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths_tr | paths_ev)
    assert not {Path(p).read_bytes() for p in paths_tr} & {Path(p).read_bytes() for p in paths_ev}
    assert all(any(p.startswith(r) for r in tr.image_roots) for p in paths_tr)
    assert tr.samples[0].image_sizes == [(64, 64)]


def test_family_formatters_are_used(tmp_path):
    class Fam:
        @staticmethod
        def grounding_answer(phrase, box, w, h):
            return f"{phrase}: <box>{int(box.x1)}</box>"

        @staticmethod
        def grounding_prompt(phrase):
            return f"where is {phrase}"

    r = load_dataset(DataConfig(synthetic=SyntheticConfig(n=3)), "train", work_dir=tmp_path, family=Fam)
    s = r.samples[0]
    assert s.messages[0].content[1].text == f"where is {s.targets[0].phrase}"
    assert s.messages[1].content[0].text == f"{s.targets[0].phrase}: <box>{int(s.targets[0].box.x1)}</box>"


def test_missing_synthetic_work_dir_and_no_data():
    with pytest.raises(ValueError, match="work_dir"):
        load_dataset(DataConfig(synthetic=SyntheticConfig(n=2)), "train")
    assert load_dataset(DataConfig(), "eval").samples == []
    with pytest.raises(DataError, match="no training data"):
        load_dataset(DataConfig(), "train")


def _source_with_bad_lines(tmp_path, n_good=20):
    samples = generate(tmp_path, n_good, seed=0)
    path = tmp_path / "train.jsonl"
    write(samples, path, "conversations")
    lines = path.read_text().splitlines()
    bad = json.loads(lines[0])
    bad["image"] = "images/nope.png"
    lines.insert(3, json.dumps(bad))
    lines.insert(5, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_skip_counts_and_names_lines(tmp_path, caplog):
    path = _source_with_bad_lines(tmp_path)
    cfg = DataConfig(train=[SourceConfig(str(path))], on_error="skip", max_error_fraction=0.2)
    r = load_dataset(cfg)
    assert len(r.samples) == 20
    kinds = {(e.kind, e.line) for e in r.errors}
    assert kinds == {(MISSING_MEDIA, 4), (BAD_JSON, 6)}
    assert r.stats["skipped"] == 2 and r.stats["read"] == 21
    assert f"{path}:6" in caplog.text and f"{path}:4" in caplog.text


def test_raise_stops_at_first_problem(tmp_path):
    path = _source_with_bad_lines(tmp_path)
    cfg = DataConfig(train=[SourceConfig(str(path))], on_error="raise")
    with pytest.raises(DataError, match=rf"{path}:4.*missing_media"):
        load_dataset(cfg)


def test_error_fraction_exceeded(tmp_path):
    path = _source_with_bad_lines(tmp_path, n_good=10)
    cfg = DataConfig(train=[SourceConfig(str(path))], on_error="skip", max_error_fraction=0.1)
    with pytest.raises(DataError, match=r"2 of 12 samples .* over data.max_error_fraction=0.1"):
        load_dataset(cfg)


def test_repeat_applies(tmp_path):
    samples = generate(tmp_path, 4, seed=0)
    path = tmp_path / "d.jsonl"
    write(samples, path, "canonical")
    r = load_dataset(DataConfig(train=[SourceConfig(str(path), repeat=2.5)]))
    assert [s.id for s in r.samples] == [s.id for s in samples] * 2 + [s.id for s in samples[:2]]


def test_missing_or_directory_source_is_a_problem(tmp_path):
    good = tmp_path / "g.jsonl"
    write(generate(tmp_path, 3, seed=0), good, "canonical")
    (tmp_path / "adir").mkdir()
    cfg = DataConfig(train=[SourceConfig(str(good)), SourceConfig(str(tmp_path / "adir"))], max_error_fraction=0.5)
    r = load_dataset(cfg)
    assert len(r.samples) == 3
    assert [(e.source, e.reason) for e in r.errors] == [(str(tmp_path / "adir"), "not a data file")]


def test_data_never_widens_its_own_roots(tmp_path):
    """A row's meta cannot add a root (``image_root: "/"``) nor forge where it came from, and
    an InternVL meta file's ``root`` must lie inside a configured root."""
    from PIL import Image

    from vlm_train.data.errors import OUTSIDE_ROOT

    data = tmp_path / "data"
    secret = tmp_path / "secret"
    for d in (data, secret):
        d.mkdir()
    Image.new("RGB", (8, 8)).save(secret / "private.png")
    good = generate(data, 2, seed=0)
    path = data / "d.jsonl"
    write(good, path, "canonical")
    row = json.loads(path.read_text().splitlines()[0])
    row["id"] = "forged"
    row["messages"][0]["content"][0]["media"] = str(secret / "private.png")
    for provenance in ({"image_root": "/"}, {"image_root": str(secret), "source": "elsewhere.jsonl", "line": 99}):
        row["meta"] = provenance
        path.write_text(path.read_text() + json.dumps(row) + "\n")
    r = load_dataset(DataConfig(train=[SourceConfig(str(path))], on_error="skip", max_error_fraction=0.9))
    assert [s.id for s in r.samples] == [s.id for s in good]
    assert [(e.kind, e.source, e.line) for e in r.errors] == [(OUTSIDE_ROOT, str(path), 3), (OUTSIDE_ROOT, str(path), 4)]
    assert r.image_roots == [str(data.resolve())]
    assert all(s.meta["image_root"] == str(data.resolve()) for s in r.samples)

    # A meta file's documented root field is resolved against the configured roots.
    write(good, data / "conv.jsonl", "conversations")
    meta = data / "meta.json"
    meta.write_text(json.dumps({"ds": {"root": str(secret), "annotation": "conv.jsonl"}}))
    cfg = DataConfig(train=[SourceConfig(str(meta), format="conversations_meta")], on_error="raise")
    with pytest.raises(DataError, match="ds.root .* outside the configured roots"):
        load_dataset(cfg)
    import shutil

    shutil.copytree(data / "images", secret / "images")
    cfg.image_roots = [str(secret)]
    got = load_dataset(cfg)
    assert len(got.samples) == 2 and str(secret.resolve()) in got.image_roots
