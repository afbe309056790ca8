"""Weights load from safetensors only: a pickle (``pytorch_model.bin``, ``*.pt``) can run code.

Family ``load`` functions call ``require_safetensors`` on a local checkpoint directory before
``from_pretrained(..., use_safetensors=True)``, so a directory holding only pickled weights is
refused with a message saying what was found and how to convert it, rather than transformers'
generic "no file named ..." error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class UnsafeCheckpoint(ValueError):
    """A checkpoint directory without safetensors weights."""


def require_safetensors(path: str | Path) -> None:
    """Raise UnsafeCheckpoint when local directory ``path`` has no ``*.safetensors`` weights.
    Hub ids and missing paths are left to ``from_pretrained`` (``use_safetensors=True`` there
    fetches nothing else)."""
    p = Path(path)
    if not p.is_dir() or any(p.glob("*.safetensors")):
        return
    pickles = sorted(f.name for f in p.iterdir() if f.suffix in PICKLE_SUFFIXES)
    found = f"only pickled weights ({', '.join(pickles)})" if pickles else "no weights"
    raise UnsafeCheckpoint(
        f"{p}: {found}; weights load from safetensors only (a pickle can run code when loaded). "
        "Convert it once, where you trust the file: load it and save_pretrained(..., safe_serialization=True)"
    )


def load_weights(model_cls: Any, model_cfg: Any, dtype: Any = None, **kw: Any) -> Any:
    """``model_cls.from_pretrained(model_cfg.path)`` the one way every family loads weights:
    safetensors only, never remote code, the configured attention, and ``dtype`` (None:
    ``model_cfg.dtype`` resolved for this machine). ``kw`` go to ``from_pretrained``."""
    from vlm_train.models.common import resolve_attn, resolve_dtype

    require_safetensors(model_cfg.path)
    return model_cls.from_pretrained(
        model_cfg.path, dtype=resolve_dtype(model_cfg.dtype) if dtype is None else dtype,
        attn_implementation=resolve_attn(model_cfg.attn_implementation), trust_remote_code=False,
        use_safetensors=True, **kw,
    )
