"""Model families. The registry is a plain dict: family name -> module path exposing FAMILY."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from vlm_train.models.base import Family

FAMILIES: dict[str, str] = {
    "internvl": "vlm_train.models.internvl",
    "ovis2_5": "vlm_train.models.ovis2_5",
    "qwen3_vl": "vlm_train.models.qwen3_vl",
}

# ``model.family`` when a config names none (the registry owns it, like every family name).
DEFAULT_FAMILY = "internvl"


# Families whose model classes transformers does not ship register them with its Auto classes
# in every process that imports vlm_train (an import hook: no torch/transformers import here),
# so ``AutoModelForCausalLM.from_pretrained(dir)`` works without remote code.
HF_AUTO_REGISTRATION: dict[str, str] = {
    "ovis2_5": "vlm_train.models.ovis2_5.hf_register",
}


def install_hf_auto() -> None:
    """Install every family's Auto-class registration (called by ``vlm_train/__init__.py``)."""
    for path in HF_AUTO_REGISTRATION.values():
        importlib.import_module(path).install()


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name]).FAMILY


def family_of_checkpoint(path: str | Path) -> Family:
    """The family whose checkpoints carry this directory's ``config.json`` ``model_type``.

    Raises:
        FileNotFoundError: no config.json in ``path``.
        ValueError: a model type no family claims.
    """
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (no config.json)")
    model_type = json.loads(config.read_text()).get("model_type")
    for name in FAMILIES:
        family = get_family(name)
        if family.model_type == model_type:
            return family
    raise ValueError(f"{config}: model_type {model_type!r} belongs to no known family ({', '.join(FAMILIES)})")
