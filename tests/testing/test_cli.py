"""`vlm-train tiny` writes a loadable checkpoint of each family."""

from __future__ import annotations

import pytest
import torch

from vlm_train.cli import main
from vlm_train.config import ModelConfig
from vlm_train.models import get_family


@pytest.mark.parametrize("family", ["internvl", "ovis2_5"])
def test_tiny_command_writes_loadable_checkpoint(family, tmp_path, capsys):
    assert main(["tiny", family, str(tmp_path / "m"), "--seed", "3"]) == 0
    assert "written to" in capsys.readouterr().out
    model, proc = get_family(family).load(ModelConfig(family=family, path=str(tmp_path / "m")), dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) > 100_000 and proc.tokenizer is not None


def test_unknown_group_and_family_exit_2(tmp_path, capsys):
    assert main(["nope"]) == 2
    assert main(["tiny", "llava", str(tmp_path)]) == 2
