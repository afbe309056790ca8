"""Writing a stage's final model: full weights (ZeRO-3 gathered) or a LoRA adapter + merge."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vlm_train.config import JobConfig
from vlm_train.runstate import write_text_atomic
from vlm_train.train.model import load_base
from vlm_train.train.worker import barrier

log = logging.getLogger("vlm_train")


def save_final(trainer: Any, cfg: JobConfig, family: Any, processor: Any, stage: str, is_main: bool) -> Path | None:
    """Every rank calls this (ZeRO-3 gathers weights collectively); rank 0 writes.

    LoRA runs write the adapter to ``models/<stage>/adapter`` and, with
    ``model.lora.merge_at_end``, the merged model to ``models/<stage>/merged``.
    Full runs write ``models/<stage>/full``. ``models/<stage>/MODEL`` names the loadable one,
    which rank 0 returns.
    """
    out = cfg.run_dir.models(stage)
    lora = cfg.model.lora.enabled
    target = out / ("adapter" if lora else "full")
    trainer.save_model(str(target))
    barrier()
    if not is_main:
        return None
    drop_pickles(target, trainer.args)
    processor.save_pretrained(str(target))
    loadable = target
    if lora and cfg.model.lora.merge_at_end:
        loadable = merge_adapter(cfg, family, target, out / "merged")
    write_text_atomic(cfg.run_dir.model_pointer(stage), str(loadable.relative_to(out)) + "\n")
    log.info("%s: final model at %s", stage, loadable)
    return loadable


def drop_pickles(model_dir, args: Any) -> None:
    """Replace the Trainer's ``training_args.bin`` (a pickle) with readable JSON: a final model
    directory is what others load, and nothing in it may need unpickling."""
    pickled = Path(model_dir) / "training_args.bin"
    if pickled.exists():
        pickled.unlink()
    (Path(model_dir) / "training_args.json").write_text(args.to_json_string())  # hub_token masked by HF


def merge_adapter(cfg: JobConfig, family: Any, adapter_dir: Path, out_dir: Path) -> Path:
    """Load the base model on CPU, apply the adapter, merge, save safetensors.

    Runs on rank 0 alone, so the ZeRO-3 context the trainer registered must be off while
    loading: otherwise from_pretrained would partition the base model with collectives the
    other ranks never join (a deadlock).
    """
    from peft import PeftModel
    from transformers.integrations import deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds.unset_hf_deepspeed_config()
    try:
        model, processor = load_base(cfg.model, family)
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    processor.save_pretrained(str(out_dir))
    return out_dir
