"""``vlm-train data check``: read everything, report every problem, print statistics.

The same reading and validation as training (``load_dataset``), but collecting every
problem instead of stopping, grouped by class with file:line, then the decision training
would make: exit 1 when the problems exceed ``data.max_error_fraction``, else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vlm_train.data.errors import DataError, DataIssue
from vlm_train.data.load import LoadResult, load_dataset
from vlm_train.data.sample import Sample
from vlm_train.models.chat import ChatFormat

SHOW_PER_CLASS = 20


def render_for_count(sample: Sample, chat: ChatFormat | None = None) -> str:
    """The family's chat text of a sample; a medium leaves only the newline the chat templates
    put after it (its tokens are counted apart). Tool-call boxes are written as whole numbers
    (a length estimate: every convention's values are a few digits)."""
    chat = chat or ChatFormat()
    out = []
    for m in sample.messages:
        role = "user" if m.role == "tool" else m.role
        body = []
        for p in m.content:
            if p.type == "text":
                body.append(p.text or "")
            elif p.type in ("image", "video"):
                body.append("\n")
            elif p.type == "tool_call" and p.box is not None:
                body.append(chat.tool_call(p.tool or "crop", {"bbox_2d": [round(v) for v in p.box.as_list()]}))
            elif p.type == "tool_response":
                body.append(f"{chat.tool_response_open}\n{p.text or ''}\n{chat.tool_response_close}")
        out.append(chat.turn(role, "".join(body)))
    return "".join(out)


class TokenCounter:
    """Token length of samples for a family: text through its tokenizer, plus
    ``tokens_per_image`` for each image or crop and for each sampled video frame."""

    def __init__(self, tokenizer: Any, tokens_per_image: int, num_frames: int, note: str, chat: ChatFormat | None = None):
        self.tokenizer = tokenizer
        self.chat = chat
        self.tokens_per_image = tokens_per_image
        self.num_frames = num_frames
        self.note = note

    def __call__(self, sample: Sample) -> int:
        text = len(self.tokenizer(render_for_count(sample, self.chat), add_special_tokens=False)["input_ids"])
        images = sum(
            1
            for m in sample.messages
            for p in m.content
            if p.type == "image" or (p.type == "tool_response" and (p.media or p.source))
        )
        videos = sum(1 for m in sample.messages for p in m.content if p.type == "video")
        return text + self.tokens_per_image * (images + videos * self.num_frames)


def token_counter(model_cfg: Any, num_frames: int) -> tuple[TokenCounter, str | None]:
    """The configured family's tokenizer (a tiny one is built offline for ``path: tiny``).

    Returns the counter and a temporary folder to delete afterwards (None when not needed).
    """
    from transformers import AutoProcessor, AutoTokenizer

    from vlm_train.models import get_family

    family = get_family(model_cfg.family)
    tmp = None
    path = model_cfg.path
    if path == "tiny":
        tmp = tempfile.mkdtemp(prefix="vlm_train_check_")
        path = str(family.tiny(tmp, **dataclasses.asdict(model_cfg.tiny)))
    try:
        proc = AutoProcessor.from_pretrained(path, local_files_only=True)
        tok = getattr(proc, "tokenizer", proc)
        seq = int(getattr(proc, "image_seq_length", 0) or 0)
        # Each image span also has a start and an end token (e.g. <img> </img>).
        per_image = seq + 2 if seq else 0
    except (OSError, ValueError, KeyError):
        tok, per_image = AutoTokenizer.from_pretrained(path, local_files_only=True), 0
    note = f"text tokens + {per_image} per image/crop/frame (one tile each: a lower bound when images tile)"
    return TokenCounter(tok, per_image, num_frames, note, family.chat), tmp


def _percentiles(values: list[int]) -> str:
    if not values:
        return "n/a"
    a = np.asarray(values)
    p = np.percentile(a, [50, 90, 99])
    return f"p50 {p[0]:.0f}, p90 {p[1]:.0f}, p99 {p[2]:.0f}, max {a.max()}"


def report(
    result: LoadResult, fraction_limit: float, lengths: list[int] | None, length_note: str, max_length: int | None
) -> str:
    """The text printed by ``check``."""
    n_err = len(result.errors)
    total = result.stats.get("records", 0)
    lines = []
    groups: dict[str, list[DataIssue]] = defaultdict(list)
    for e in result.errors:
        groups[e.kind].append(e)
    if groups:
        lines.append(f"problems: {n_err}")
        for kind, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {kind} ({len(items)}):")
            lines += [f"    {e.where()}: {e.reason}" for e in items[:SHOW_PER_CLASS]]
            if len(items) > SHOW_PER_CLASS:
                lines.append(f"    ... and {len(items) - SHOW_PER_CLASS} more")
    else:
        lines.append("problems: none")
    st = result.stats
    lines.append("statistics:")
    lines.append(f"  samples: {st['samples']} usable (after repeats) of {st.get('read', 0)} read")
    for key, label in (
        ("images_per_sample", "images"),
        ("videos_per_sample", "videos"),
        ("tool_calls_per_sample", "tool calls"),
    ):
        v = st[key]
        lines.append(f"  {label} per sample: mean {v['mean']}, max {v['max']} (total {v['total']})")
    if lengths is not None:
        lines.append(f"  token length: {_percentiles(lengths)}  [{length_note}]")
        if max_length:
            over = sum(1 for n in lengths if n > max_length)
            lines.append(
                f"  over max_length {max_length}: {over} samples (truncated or skipped by the input builder, per config)"
            )
    frac = n_err / total if total else 0.0
    verdict = "FAIL" if n_err and frac > fraction_limit else "OK"
    lines.append(
        f"result: {verdict}: {n_err} problems in {total} records = {frac:.1%} (limit data.max_error_fraction {fraction_limit:.1%})"
    )
    return "\n".join(lines)


def _usage(msg: str) -> int:
    print(f"vlm-train data check: {msg}", file=sys.stderr)
    return 2


def run_check(a: argparse.Namespace) -> int:
    from vlm_train.config import ConfigError, DataConfig, SourceConfig, load_config

    targets = list(a.target)
    is_config = len(targets) == 1 and targets[0].endswith((".yaml", ".yml"))
    model_cfg = None
    max_length = None
    work_dir = a.work_dir
    if is_config:
        try:
            cfg = load_config(targets[0], check_trl=False)
        except ConfigError as e:
            return _usage(str(e))
        data_cfg = cfg.data
        model_cfg = cfg.model
        if a.family:
            model_cfg = dataclasses.replace(model_cfg, family=a.family)
        max_length = (cfg.sft or {}).get("max_length")
        work_dir = work_dir or str(cfg.run_dir.data)
    else:
        missing = [t for t in targets if not Path(t).is_file()]
        if missing:
            return _usage(f"data file not found: {missing[0]}")
        roots = a.image_root or []
        bad_root = [r for r in roots if not Path(r).is_dir()]
        if bad_root:
            return _usage(f"--image-root is not a directory: {bad_root[0]}")
        sources = [SourceConfig(t, format=a.format, image_root=roots[0] if roots else None) for t in targets]
        data_cfg = DataConfig(train=sources, image_roots=roots)
        if a.family:
            from vlm_train.config import ModelConfig

            model_cfg = ModelConfig(family=a.family)
    limit = a.max_error_fraction if a.max_error_fraction is not None else data_cfg.max_error_fraction
    if not 0.0 <= limit <= 1.0:
        return _usage(f"--max-error-fraction must be in [0, 1], got {limit}")
    collect_all = dataclasses.replace(data_cfg, on_error="skip", max_error_fraction=1.0)
    tmp_synth = None
    if work_dir is None:
        tmp_synth = work_dir = tempfile.mkdtemp(prefix="vlm_train_check_data_")
    tmp_model = None
    # Every problem is in the report; the loader's per-sample warnings would repeat them.
    load_log = logging.getLogger("vlm_train.data.load")
    old_level = load_log.level
    load_log.setLevel(logging.ERROR)
    try:
        try:
            result = load_dataset(collect_all, a.split, work_dir=work_dir, decode=not a.header_only)
        except DataError as e:
            if not e.issues:
                print(f"vlm-train data check: {e}", file=sys.stderr)
                return 1
            result = LoadResult([], [], e.issues, {"samples": 0, "read": 0, "records": len(e.issues), **_empty_stats()})
        lengths = None
        note = ""
        if model_cfg is not None and not a.no_tokens and result.samples:
            try:
                counter, tmp_model = token_counter(model_cfg, data_cfg.num_frames)
                lengths = [counter(s) for s in result.samples]
                note = f"{model_cfg.family}: {counter.note}"
            except Exception as e:  # token statistics are a bonus: never fail the check on them
                print(f"note: token lengths unavailable ({type(e).__name__}: {e})", file=sys.stderr)
        text = report(result, limit, lengths, note, max_length)
        print(text)
        return 1 if text.splitlines()[-1].startswith("result: FAIL") else 0
    finally:
        load_log.setLevel(old_level)
        for t in (tmp_synth, tmp_model):
            if t:
                shutil.rmtree(t, ignore_errors=True)


def _empty_stats() -> dict[str, Any]:
    zero = {"mean": 0.0, "max": 0, "total": 0}
    return {"images_per_sample": zero, "videos_per_sample": zero, "tool_calls_per_sample": zero}
