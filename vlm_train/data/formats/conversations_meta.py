"""A meta JSON naming several conversation datasets (the layout of a family's official
fine-tuning meta files; docs/models.md, "Seed data formats").

``{name: {"root": image_dir, "annotation": file.jsonl, "data_augment": false,
"repeat_time": 1, "length": N}}``. Relative ``root`` and ``annotation`` paths are taken
relative to the meta file's folder. Each sample records its dataset name and repeat_time
(``meta["dataset"]``, ``meta["repeat"]``); the loader applies the repeat, so a conversion
never multiplies samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_train.data.errors import BAD_FIELD, OUTSIDE_ROOT, DataIssue
from vlm_train.data.formats import conversations
from vlm_train.data.formats.base import ReadOptions
from vlm_train.data.formats.jsonio import read_records, write_json
from vlm_train.data.sample import Sample


def is_meta(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, dict) and "annotation" in v for v in obj.values())


def read(path: str | Path, opts: ReadOptions | None = None) -> Iterator[Sample | DataIssue]:
    opts = opts or ReadOptions()
    source = str(path)
    base = Path(path).parent
    records = list(read_records(path))
    if len(records) != 1 or isinstance(records[0], DataIssue):
        yield from (r for r in records if isinstance(r, DataIssue))
        if len(records) != 1:
            yield DataIssue(
                BAD_FIELD, "a meta file is one JSON object {name: {root, annotation, ...}}", source
            )
        return
    _, meta = records[0]
    if not is_meta(meta):
        yield DataIssue(BAD_FIELD, "not a meta file: every value needs an 'annotation'", source, 1)
        return
    for name, entry in meta.items():
        ann, root = entry.get("annotation"), entry.get("root", "")
        repeat = entry.get("repeat_time", 1)
        if not isinstance(ann, str) or not isinstance(root, str):
            yield DataIssue(BAD_FIELD, f"{name}: 'annotation' and 'root' must be strings", source, 1)
            continue
        if isinstance(repeat, bool) or not isinstance(repeat, (int, float)) or repeat <= 0:
            yield DataIssue(BAD_FIELD, f"{name}.repeat_time must be a positive number, got {repeat!r}", source, 1)
            continue
        ann_path = Path(ann) if Path(ann).is_absolute() else base / ann
        if not ann_path.is_file():
            yield DataIssue(BAD_FIELD, f"{name}.annotation: file not found: {ann_path}", source, 1)
            continue
        root_path = opts.confine_root(Path(root) if Path(root).is_absolute() else base / root, path)
        if root_path is None:
            yield DataIssue(
                OUTSIDE_ROOT,
                f"{name}.root {root!r} lies outside the configured roots; list it in data.image_roots "
                "or the source's image_root",
                source,
                1,
            )
            continue
        sub = dataclasses.replace(opts, image_root=root_path)
        for item in conversations.read(ann_path, sub):
            if isinstance(item, Sample):
                item.meta["dataset"] = name
                item.meta["repeat"] = repeat
                extra_entry = {
                    k: v for k, v in entry.items() if k not in ("root", "annotation", "repeat_time", "length")
                }
                if extra_entry:
                    item.meta["dataset_extra"] = extra_entry
            yield item


def write(samples: list[Sample], path: str | Path) -> None:
    """The meta JSON plus one ``<meta stem>_<dataset>.jsonl`` annotation per dataset beside it."""
    path = Path(path)
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(str(s.meta.get("dataset", "data")), []).append(s)
    meta: dict[str, Any] = {}
    for name, group in groups.items():
        ann = path.parent / f"{path.stem}_{name}.jsonl"
        conversations.write(group, ann)
        root = Path(group[0].meta.get("image_root", path.parent)).resolve()
        # Relative to the meta file when the images live below it, so the folder can move.
        try:
            root_text = str(root.relative_to(path.parent.resolve()))
        except ValueError:
            root_text = str(root)
        meta[name] = {
            "root": root_text,
            "annotation": ann.name,
            "data_augment": False,
            "repeat_time": group[0].meta.get("repeat", 1),
            "length": len(group),
            **group[0].meta.get("dataset_extra", {}),
        }
    write_json(path, meta)
