"""Model families. The registry is a plain dict: family name -> module path exposing FAMILY."""

from __future__ import annotations

import importlib

from vlm_train.models.base import Family

FAMILIES: dict[str, str] = {
    "internvl": "vlm_train.models.internvl",
    "ovis2_5": "vlm_train.models.ovis2_5",
}


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
