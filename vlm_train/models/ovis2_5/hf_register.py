"""Registration of Ovis2.5 with transformers' Auto classes, eager or deferred.

``import vlm_train`` must stay cheap (no torch, no transformers), yet
``AutoConfig.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained`` on an Ovis2.5
directory must work in any process that imported vlm_train. ``install()`` therefore registers
right away when transformers' auto modules are already loaded, and otherwise adds a tiny
import hook that registers as soon as they are: the config when
``transformers.models.auto.configuration_auto`` finishes loading, the model class when
``transformers.models.auto.modeling_auto`` does.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
_MODEL_MODULE = "transformers.models.auto.modeling_auto"
_done: set[str] = set()


def register_config() -> None:
    if "config" in _done:
        return
    from transformers import AutoConfig

    from vlm_train.models.ovis2_5.config import Ovis2_5_Config, Siglip2NavitConfig

    AutoConfig.register("siglip2_navit", Siglip2NavitConfig, exist_ok=True)
    AutoConfig.register("ovis2_5", Ovis2_5_Config, exist_ok=True)
    _done.add("config")


def register_model() -> None:
    if "model" in _done:
        return
    register_config()
    from transformers import AutoModelForCausalLM

    from vlm_train.models.ovis2_5.config import Ovis2_5_Config
    from vlm_train.models.ovis2_5.modeling import Ovis2_5

    AutoModelForCausalLM.register(Ovis2_5_Config, Ovis2_5, exist_ok=True)
    _done.add("model")


def register() -> None:
    """Register config and model now (imports torch and transformers)."""
    register_model()


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, after):
        self.inner = inner
        self.after = after

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.after()


class _Hook(importlib.abc.MetaPathFinder):
    """Wraps the loader of the two auto modules so registration runs right after them."""

    targets = {_CONFIG_MODULE: register_config, _MODEL_MODULE: register_model}

    def find_spec(self, fullname, path, target=None):
        after = self.targets.get(fullname)
        if after is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, after)
        return spec


def install() -> None:
    """Register now if transformers' auto modules are loaded, else when they load."""
    if _MODEL_MODULE in sys.modules:
        register_model()
        return
    if _CONFIG_MODULE in sys.modules:
        register_config()
    if not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
