"""What a user points export, inference, evaluation and the demo at, resolved to weights.

Accepted forms:

- a run directory (``config.yaml`` + ``models/<stage>/MODEL``): the final model of the last
  stage that finished, in the order of the run's ``stages``;
- a stage's model directory (``models/<stage>/``, holding the ``MODEL`` pointer);
- a checkpoint directory (``config.json`` + safetensors): a final model, an export, or a
  Ray Train checkpoint (``<run>/<stage>/checkpoint-NNNNNN``; its processor files come from
  the run's base model when the checkpoint has none);
- a LoRA adapter directory (``adapter_config.json``): merged into its base on load; the base
  is the adapter's ``base_model_name_or_path`` unless ``base`` is given.

The family comes from the checkpoint's ``config.json`` (``model_type``), never from a name.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_train.models import family_of_checkpoint
from vlm_train.models.base import Family

# Files a processor writes (any one present means the directory carries its processor).
_PROCESSOR_FILES = ("tokenizer_config.json", "tokenizer.json")


class SourceError(ValueError):
    """A model path that cannot be used; the message names the path and what is missing."""


@dataclass
class ModelSource:
    family: Family
    weights: Path
    """Full checkpoint directory, or the adapter directory when ``adapter``."""
    adapter: bool = False
    base: Path | None = None
    """The base checkpoint an adapter applies to."""
    processor_dir: Path | None = None
    """Where the processor files are, when not next to the weights."""

    @property
    def checkpoint(self) -> Path:
        """The directory holding config.json (the base for an adapter)."""
        return self.base if self.adapter else self.weights


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    import yaml

    f = run_dir / "config.yaml"
    return yaml.safe_load(f.read_text()) if f.is_file() else None


def _stage_model(stage_dir: Path) -> Path:
    pointer = stage_dir / "MODEL"
    target = stage_dir / pointer.read_text().strip()
    if not target.is_dir():
        raise SourceError(f"{pointer}: names {target}, which does not exist")
    return target


def _final_of_run(run_dir: Path, cfg: dict[str, Any]) -> Path:
    stages = [s for s in cfg.get("stages", ["sft"]) if s != "eval"]
    for stage in reversed(stages):
        if (run_dir / "models" / stage / "MODEL").is_file():
            return _stage_model(run_dir / "models" / stage)
    raise SourceError(f"{run_dir}: no stage of {stages} has a final model yet (models/<stage>/MODEL)")


def resolve(path: str | os.PathLike, base: str | os.PathLike | None = None) -> ModelSource:
    """Resolve ``path`` (see the module docstring). Raises SourceError naming the path."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise SourceError(f"{p}: no such model directory")
    if (p / "config.yaml").is_file() and (p / "models").is_dir():
        p = _final_of_run(p, _run_config(p) or {})
    elif (p / "MODEL").is_file():
        p = _stage_model(p)
    if (p / "adapter_config.json").is_file():
        return _adapter(p, base)
    if not (p / "config.json").is_file():
        raise SourceError(f"{p}: neither a run directory, a checkpoint (config.json) nor a LoRA adapter (adapter_config.json)")
    try:
        family = family_of_checkpoint(p)
    except ValueError as e:
        raise SourceError(str(e)) from None
    return ModelSource(family, p, processor_dir=_processor_dir(p))


def _adapter(p: Path, base: str | os.PathLike | None) -> ModelSource:
    meta = json.loads((p / "adapter_config.json").read_text())
    named = base if base is not None else meta.get("base_model_name_or_path")
    if not named:
        raise SourceError(f"{p / 'adapter_config.json'}: the adapter names no base model; pass --base BASE_DIR")
    b = Path(named).expanduser().absolute()
    if not (b / "config.json").is_file():
        how = "given with --base" if base is not None else "named by base_model_name_or_path in adapter_config.json"
        raise SourceError(
            f"{p}: LoRA adapter whose base model {b} ({how}) is not a checkpoint directory; "
            "an adapter cannot be used without its base: pass --base BASE_DIR"
        )
    try:
        family = family_of_checkpoint(b)
    except ValueError as e:
        raise SourceError(str(e)) from None
    # Training never changes the processor: the base's serves the merged model.
    return ModelSource(family, p, adapter=True, base=b, processor_dir=_processor_dir(b))


def _processor_dir(ckpt: Path) -> Path | None:
    """The checkpoint itself when it carries processor files; else (a Ray Train checkpoint,
    ``<run>/<stage>/checkpoint-N``) the run's base model."""
    if any((ckpt / f).is_file() for f in _PROCESSOR_FILES):
        return None
    run_dir = ckpt.parent.parent
    cfg = _run_config(run_dir)
    base = (cfg or {}).get("model", {}).get("path")
    if base and any((Path(base) / f).is_file() for f in _PROCESSOR_FILES):
        return Path(base)
    raise SourceError(f"{ckpt}: checkpoint without processor/tokenizer files, and no run config.yaml names a base model that has them")


def _staged(weights: Path, processor_dir: Path) -> Path:
    """A temporary directory linking the weights and the processor files side by side, so the
    family's one ``load`` reads both."""
    out = Path(tempfile.mkdtemp(prefix="vlm_train_src_"))
    for src in (processor_dir, weights):  # weights last: their config.json wins
        for f in src.iterdir():
            if f.is_file():
                target = out / f.name
                if target.exists():
                    target.unlink()
                target.symlink_to(f)
    return out


def load(src: ModelSource, dtype: str = "auto", attn_implementation: str = "auto") -> tuple[Any, Any]:
    """Model (adapter merged) and processor, on CPU, in eval mode."""
    from vlm_train.config import ModelConfig
    from vlm_train.models.common import resolve_dtype

    ckpt = src.checkpoint
    if src.processor_dir is not None:
        ckpt = _staged(ckpt, src.processor_dir)
    cfg = ModelConfig(family=src.family.name, path=str(ckpt), dtype=dtype, attn_implementation=attn_implementation)
    model, processor = src.family.load(cfg, dtype=resolve_dtype(dtype))
    if src.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(src.weights)).merge_and_unload()
    return model.eval(), processor


def check_family(src: ModelSource, cfg: Any) -> None:
    """A job config's ``model.family`` must be the checkpoint's: a mismatch is a config error
    naming both, before any model loads."""
    from vlm_train.config import ConfigError

    if src.family.name != cfg.model.family:
        raise ConfigError(
            "model.family",
            f"is {cfg.model.family!r}, but {src.checkpoint} is a {src.family.name!r} checkpoint (config.json model_type)",
            cfg.source,
        )


def resolve_job_model(cfg: Any) -> tuple[Any, ModelSource]:
    """The job's model: ``tiny`` built in the run directory, a run directory's final model, or a
    checkpoint; checked against ``model.family``. Returns the config (path made concrete) and the source."""
    from dataclasses import replace

    from vlm_train.launch.base_model import materialise_model
    from vlm_train.models import get_family

    cfg = materialise_model(cfg, get_family(cfg.model.family))
    src = resolve(cfg.model.path)
    check_family(src, cfg)
    return replace(cfg, model=replace(cfg.model, path=str(src.weights))), src
