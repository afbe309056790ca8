"""Model families. The registry is a plain dict: family name -> module path exposing FAMILY."""

from __future__ import annotations

import importlib

from vlm_train.models.base import Family

FAMILIES: dict[str, str] = {
    "internvl": "vlm_train.models.internvl",
    "ovis2_5": "vlm_train.models.ovis2_5",
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name]).FAMILY
