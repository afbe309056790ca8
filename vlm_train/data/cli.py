"""``vlm-train data ...``: synthesise, convert, check data; sample video frames.

Exit codes: 0 clean, 1 data problems (check: more than ``max_error_fraction``; convert:
some records skipped), 2 usage errors (bad arguments, unreadable config).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlm_train.data import formats
from vlm_train.data.errors import DataIssue

FORMAT_NAMES = list(formats.FORMATS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 already; keep the message on stderr
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _build() -> argparse.ArgumentParser:
    p = _Parser(prog="vlm-train data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    s = sub.add_parser("synth", help="write synthetic grounding data (images + a data file)")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", default="canonical", choices=FORMAT_NAMES)
    s.add_argument("--kind", default="grounding", choices=["grounding", "toolqa", "mixed"])
    s.add_argument("--image-size", type=int, default=64)
    s.add_argument("--max-shapes", type=int, default=3)

    c = sub.add_parser("convert", help="convert a data file to another format")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--to", required=True, choices=FORMAT_NAMES)
    c.add_argument("--from", dest="from_", default="auto", choices=["auto", *FORMAT_NAMES])
    c.add_argument("--image-root", default=None, help="root of the input's relative media paths")

    k = sub.add_parser("check", help="validate a config's data (or plain data files) and print statistics")
    k.add_argument("target", nargs="+", help="a job config YAML, or data files with --image-root")
    k.add_argument("--image-root", action="append", default=None, help="image root for plain data files (repeatable)")
    k.add_argument("--format", default="auto", choices=["auto", *FORMAT_NAMES])
    k.add_argument("--split", default="train", choices=["train", "eval"])
    k.add_argument(
        "--family", default=None, help="family whose tokenizer measures token lengths (default: the config's)"
    )
    k.add_argument("--max-error-fraction", type=float, default=None)
    k.add_argument("--work-dir", default=None, help="where synthetic data of a config is generated")
    k.add_argument("--no-tokens", action="store_true", help="skip token-length statistics")
    k.add_argument(
        "--header-only",
        action="store_true",
        help="read image headers only (no full decode): faster, misses truncated files",
    )

    f = sub.add_parser("frames", help="write uniformly sampled video frames as PNG")
    f.add_argument("video")
    f.add_argument("--out", required=True)
    f.add_argument("--num-frames", type=int, default=8)
    return p


def _synth(a: argparse.Namespace) -> int:
    from vlm_train.data.synthetic import generate

    if a.n < 1 or a.max_shapes < 1 or a.image_size < 16:
        print("vlm-train data synth: need --n >= 1, --max-shapes >= 1, --image-size >= 16", file=sys.stderr)
        return 2
    out = Path(a.out)
    samples = generate(out, a.n, a.seed, a.image_size, a.max_shapes, a.kind)
    for s in samples:
        s.meta.update(image_root=str(out.resolve()), dataset="synthetic")
    name = "meta.json" if a.format == "conversations_meta" else f"data_{a.format}.jsonl"
    formats.write(samples, out / name, a.format)
    print(f"wrote {len(samples)} samples to {out / name} (images under {out / 'images'})")
    return 0


def _convert(a: argparse.Namespace) -> int:
    opts = formats.ReadOptions(image_root=a.image_root)
    samples, issues = [], []
    if not Path(a.input).is_file():
        print(f"vlm-train data convert: input not found: {a.input}", file=sys.stderr)
        return 2
    for item in formats.read(a.input, a.from_, opts):
        (issues if isinstance(item, DataIssue) else samples).append(item)
    for i in issues:
        print(f"skipped: {i}", file=sys.stderr)
    try:
        formats.write(samples, a.output, a.to)
    except ValueError as e:
        print(f"vlm-train data convert: cannot write {a.to}: {e}", file=sys.stderr)
        return 1
    print(f"converted {len(samples)} samples to {a.output} ({a.to}); {len(issues)} skipped")
    if Path(a.output).resolve().parent != Path(opts.root_for(a.input)):
        print(
            f"note: media paths stay relative to {opts.root_for(a.input)}; read the output with that image root",
            file=sys.stderr,
        )
    return 1 if issues else 0


def _frames(a: argparse.Namespace) -> int:
    from vlm_train.data.media import MediaError
    from vlm_train.data.video import write_frames

    if a.num_frames < 1:
        print("vlm-train data frames: --num-frames must be >= 1", file=sys.stderr)
        return 2
    if not Path(a.video).is_file():
        print(f"vlm-train data frames: video not found: {a.video}", file=sys.stderr)
        return 2
    try:
        written = write_frames(a.video, a.out, a.num_frames)
    except MediaError as e:
        print(f"vlm-train data frames: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} frames to {a.out}")
    return 0


def main(argv: list[str]) -> int:
    try:
        a = _build().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if a.cmd == "synth":
        return _synth(a)
    if a.cmd == "convert":
        return _convert(a)
    if a.cmd == "frames":
        return _frames(a)
    from vlm_train.data.check import run_check

    return run_check(a)
