"""`vlm-train export RUN_DIR|CHECKPOINT OUT [--merge-lora] [--dtype D]`: a self-contained
checkpoint in the family's official layout, ready for ``from_pretrained`` or ``vllm serve``.

The output holds safetensors weights (sharded with ``model.safetensors.index.json`` past
``--max-shard-size``), ``config.json`` with the family's official ``architectures``, the
processor and tokenizer files, the chat template and ``generation_config.json``; nothing
pickled (no ``training_args.bin``, no optimizer or DeepSpeed state). It is written to a
temporary sibling and renamed into place, so a failed export never leaves a half directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from vlm_train.infer.source import ModelSource, SourceError, load, resolve

DTYPES = ("bfloat16", "float16", "float32")
# Anything pickled or training-only must never reach an export.
_FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def export(src: ModelSource, out: Path, dtype: str = "bfloat16", merge_lora: bool = False,
           max_shard_size: str = "5GB", overwrite: bool = False) -> Path:
    """Write ``src`` to ``out`` (see the module docstring). Returns ``out``.

    Raises:
        SourceError: an adapter without ``merge_lora``, or ``out`` exists and is not empty.
    """
    if src.adapter and not merge_lora:
        raise SourceError(f"{src.weights}: a LoRA adapter; pass --merge-lora to export a full model merged into {src.base}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SourceError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    model, processor = load(src, dtype=dtype)
    tmp = out.with_name(out.name + ".exporting")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True, max_shard_size=max_shard_size)
    processor.save_pretrained(str(tmp))
    bad = [f.name for f in tmp.iterdir() if f.suffix in _FORBIDDEN_SUFFIXES]
    if bad:  # a library change that started writing pickles must fail loudly, not ship them
        shutil.rmtree(tmp)
        raise RuntimeError(f"export wrote pickled files {bad}; refusing to publish {out}")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def describe(out: Path) -> dict:
    cfg = json.loads((out / "config.json").read_text())
    files = sorted(f.name for f in out.iterdir())
    size = sum(f.stat().st_size for f in out.iterdir() if f.suffix == ".safetensors")
    return {"out": str(out), "architectures": cfg.get("architectures"), "model_type": cfg.get("model_type"),
            "dtype": cfg.get("dtype", cfg.get("torch_dtype")), "safetensors_bytes": size, "files": files}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vlm-train export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="run directory, models/<stage>/ directory, checkpoint or LoRA adapter directory")
    ap.add_argument("out", help="output directory (must not exist or be empty)")
    ap.add_argument("--merge-lora", action="store_true", help="merge a LoRA adapter into its base")
    ap.add_argument("--base", help="base checkpoint of an adapter (default: the adapter's base_model_name_or_path)")
    ap.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="weight dtype of the export (default bfloat16)")
    ap.add_argument("--max-shard-size", default="5GB", help="safetensors shard size (default 5GB)")
    ap.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        src = resolve(a.source, a.base)
        out = export(src, Path(a.out).expanduser().absolute(), a.dtype, a.merge_lora, a.max_shard_size, a.overwrite)
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(describe(out), indent=2))
    return 0
