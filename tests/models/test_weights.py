"""Only safetensors and no pickles on load: family loads refuse pickled-only checkpoints."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from vlm_train.config import ModelConfig
from vlm_train.models import FAMILIES, get_family
from vlm_train.models.weights import UnsafeCheckpoint


@pytest.mark.parametrize("name", list(FAMILIES))
def test_pickled_only_checkpoint_is_refused(tmp_path, name):
    family = get_family(name)
    src = family.tiny(tmp_path / "safe", seed=0)
    family.load(ModelConfig(family=name, path=str(src)), dtype=torch.float32)  # the safetensors one loads
    pickled = tmp_path / "pickled"
    shutil.copytree(src, pickled)
    state = {}
    for f in sorted(pickled.glob("*.safetensors")):
        state.update(load_file(f))
        f.unlink()
    for f in pickled.glob("*.safetensors.index.json"):
        f.unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpoint, match=r"only pickled weights \(pytorch_model.bin\).*safetensors only"):
        family.load(ModelConfig(family=name, path=str(pickled)), dtype=torch.float32)


def test_save_safetensors_is_launcher_owned(tmp_path):
    from tests.cluster.helpers import write_config
    from vlm_train.config import ConfigError, load_config

    for section in ("sft", "grpo"):
        with pytest.raises(ConfigError, match=rf"{section}\.save_safetensors: is set by the launcher"):
            load_config(write_config(tmp_path, "w", **{section: {"save_safetensors": False}}))
