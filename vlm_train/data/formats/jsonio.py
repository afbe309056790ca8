"""Reading JSON, JSON-list and JSONL files record by record, with line numbers.

Every problem (invalid UTF-8, malformed JSON, an empty file) becomes a DataIssue naming the
file and line; the good records around it are still returned, so one bad line never hides
the rest of a dataset.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vlm_train.data.errors import BAD_ENCODING, BAD_JSON, EMPTY_FILE, DataIssue

Record = tuple[int, Any]  # (1-based line of the record's start, parsed JSON)

# What the standard decoder raises beyond JSONDecodeError on hostile input: RecursionError for
# deeply nested arrays/objects (a line of 100,000 '['), ValueError for huge integer literals.
_HOSTILE = (RecursionError, ValueError)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hostile nesting drives the C decoder to the recursion limit before it gives up. A garbage
    collection that starts down there runs finalizers at that depth, and they fail too ("Exception
    ignored in ...", an unraisable error that test runners count as a failure). Decoding JSON
    creates no reference cycles, so pausing the collector while it runs costs nothing."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _hostile(e: BaseException, source: str, line: int | None) -> DataIssue:
    why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
    return DataIssue(BAD_JSON, f"malformed JSON: {why}", source, line)


def _decode(raw: bytes, source: str, first_line: int = 1) -> tuple[str | None, DataIssue | None]:
    try:
        return raw.decode("utf-8-sig" if first_line == 1 else "utf-8"), None
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        return None, DataIssue(BAD_ENCODING, f"invalid UTF-8 at byte {e.start} ({e.reason})", source, line)


def read_records(path: str | Path, unwrap_key: str | None = None) -> Iterator[Record | DataIssue]:
    """Records of a JSON list, a single JSON object, JSONL (detected from the content), or a
    Parquet file (``.parquet``: one record per row, line = row number + 1).

    A JSON list yields its items (line = where each item starts); a single object yields
    itself once at line 1, or, when ``unwrap_key`` names a list of objects that themselves
    hold ``unwrap_key`` (the wrapped variant ``{"conversations": [sample, ...]}``), the
    items of that list; JSONL yields one record per non-blank line.
    """
    source = str(path)
    if str(path).endswith(".parquet"):
        yield from _read_parquet(path)
        return
    raw = Path(path).read_bytes()
    if not raw.strip():
        yield DataIssue(EMPTY_FILE, "file is empty", source)
        return
    head = raw.lstrip()[:1]
    if head == b"[" or (head == b"{" and _single_object(raw)):
        text, issue = _decode(raw, source)
        if issue:
            yield issue
            return
        assert text is not None
        yield from _read_json_document(text, source, unwrap_key)
        return
    yield from _read_jsonl(raw, source)


def _single_object(raw: bytes) -> bool:
    """Whether the file is one JSON object (possibly spanning lines) rather than JSONL."""
    first = raw.lstrip().split(b"\n", 1)
    if len(first) == 1:
        return True
    try:
        with _gc_paused():
            json.loads(first[0])
        return False  # the first line alone is a complete object: JSONL
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True
    except _HOSTILE:
        return False  # read as JSONL, where that line becomes one bad_json issue


def _read_json_document(text: str, source: str, unwrap_key: str | None) -> Iterator[Record | DataIssue]:
    dec = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
    if text[start] == "{":
        try:
            with _gc_paused():
                obj, _ = dec.raw_decode(text, start)
        except json.JSONDecodeError as e:
            yield DataIssue(BAD_JSON, f"malformed JSON: {e.msg} (column {e.colno})", source, e.lineno)
            return
        except _HOSTILE as e:
            yield _hostile(e, source, _line_of(text, start))
            return
        inner = obj.get(unwrap_key) if unwrap_key else None
        if isinstance(inner, list) and inner and all(isinstance(x, dict) and unwrap_key in x for x in inner):
            m = re.search(r'"' + re.escape(unwrap_key) + r'"\s*:\s*\[', text)
            if m:  # the first such key opens the outer list: keys of items come later
                yield from _read_list(text, source, m.end())
                return
        yield _line_of(text, start), obj
        return
    yield from _read_list(text, source, start + 1)


def _read_list(text: str, source: str, pos: int) -> Iterator[Record | DataIssue]:
    """Walk a JSON list from just after its '[' item by item, so each item keeps its line.

    Line numbers are counted incrementally from the previous item (counting from the start
    for each item made reading a list quadratic: 39 s for 6.4 MB)."""
    dec = json.JSONDecoder()
    line, counted = 1, 0

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            yield DataIssue(BAD_JSON, "malformed JSON: unterminated list", source, line_at(len(text)))
            return
        if text[pos] == "]":
            return
        try:
            with _gc_paused():
                obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # A list item that does not parse leaves no reliable place to resume from.
            yield DataIssue(BAD_JSON, f"malformed JSON: {e.msg} (column {e.colno})", source, e.lineno)
            return
        except _HOSTILE as e:
            yield _hostile(e, source, line_at(pos))
            return
        yield line_at(pos), obj
        pos = end


def _read_jsonl(raw: bytes, source: str) -> Iterator[Record | DataIssue]:
    for i, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        text, issue = _decode(line, source, i)
        if issue:
            yield issue
            continue
        assert text is not None
        try:
            with _gc_paused():
                obj = json.loads(text)
            yield i, obj
        except json.JSONDecodeError as e:
            yield DataIssue(BAD_JSON, f"malformed JSON: {e.msg} (column {e.colno})", source, i)
        except _HOSTILE as e:
            yield _hostile(e, source, i)


def _read_parquet(path: str | Path) -> Iterator[Record | DataIssue]:
    """Rows of a Parquet file (HF datasets' export format), batch by batch."""
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(str(path))
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for non-Parquet bytes
        yield DataIssue(BAD_JSON, f"not a readable Parquet file ({type(e).__name__}: {e})", str(path))
        return
    if f.metadata.num_rows == 0:
        yield DataIssue(EMPTY_FILE, "file has no rows", str(path))
        return
    row = 0
    for batch in f.iter_batches(batch_size=256):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec


def write_jsonl(path: str | Path, records: list[Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
