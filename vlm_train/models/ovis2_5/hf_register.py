"""Registration of Ovis2.5 with transformers' Auto classes, without slowing ``import vlm_train``.

``config.py`` registers the config classes with ``AutoConfig`` and ``modeling.py`` registers
the model with ``AutoModelForCausalLM`` when they are imported. ``install()`` (called through
``vlm_train.models.install_hf_auto`` when vlm_train is imported) makes sure that happens in any process that imported vlm_train,
so ``AutoModelForCausalLM.from_pretrained(ovis_dir)`` works with no remote code while
``import vlm_train`` itself imports neither torch nor transformers:

- transformers' auto classes already loaded: import our two modules now;
- otherwise: a meta-path hook watches transformers' modules load, and once the auto config
  module is loaded and the outermost transformers import has finished (importing ours
  earlier would re-enter a half-initialised transformers module), it imports ours and
  removes itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

_AUTO = "transformers.models.auto.configuration_auto"
_OURS = ("vlm_train.models.ovis2_5.config", "vlm_train.models.ovis2_5.modeling")
_state = {"busy": False}


def _initializing(module) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _register(finished: str | None = None) -> None:
    """Import our config and model modules (they register themselves) when it is safe."""
    if _state["busy"] or _AUTO not in sys.modules:
        return
    for name, mod in list(sys.modules.items()):
        if name != finished and name.startswith("transformers") and _initializing(mod):
            return  # a transformers import is still running; its end will call us again
        if name in _OURS and _initializing(mod):
            return  # ours is being imported; it registers itself at its end
    _state["busy"] = True
    try:
        for hook in [f for f in sys.meta_path if isinstance(f, _Hook)]:
            sys.meta_path.remove(hook)
        for name in _OURS:
            importlib.import_module(name)
    finally:
        _state["busy"] = False


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, name: str):
        self.inner = inner
        self.name = name

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _register(finished=self.name)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers" and not fullname.startswith("transformers."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, fullname)
        return spec


def install() -> None:
    """Register now if transformers' auto classes are loaded, else right after they load."""
    if _AUTO in sys.modules:
        _register()
    elif not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
