"""Registration of Ovis2.5 with transformers' Auto classes, without slowing ``import vlm_train``.

``config.py`` registers the config classes with ``AutoConfig`` and ``modeling.py`` registers
the model with ``AutoModelForCausalLM`` when they are imported. ``install()`` (called by
``vlm_train/__init__.py``) makes sure that happens in any process that imported vlm_train:
it imports them right away when transformers' auto modules are already loaded, and
otherwise adds an import hook that imports them right after
``transformers.models.auto.configuration_auto`` / ``modeling_auto`` finish loading. So
``AutoModelForCausalLM.from_pretrained(ovis_dir)`` works with no remote code, while
``import vlm_train`` itself imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

_TARGETS = {
    "transformers.models.auto.configuration_auto": "vlm_train.models.ovis2_5.config",
    "transformers.models.auto.modeling_auto": "vlm_train.models.ovis2_5.modeling",
}


def _import_ours(name: str) -> None:
    mod = sys.modules.get(name)
    if mod is not None and getattr(getattr(mod, "__spec__", None), "_initializing", False):
        # Our module is mid-import (it imported transformers); it registers itself at its end.
        return
    importlib.import_module(name)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, ours: str):
        self.inner = inner
        self.ours = ours

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _import_ours(self.ours)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        ours = _TARGETS.get(fullname)
        if ours is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, ours)
        return spec


def install() -> None:
    """Register now where transformers' auto modules are loaded, else right after they load."""
    for auto_module, ours in _TARGETS.items():
        if auto_module in sys.modules:
            _import_ours(ours)
    if not all(m in sys.modules for m in _TARGETS) and not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
