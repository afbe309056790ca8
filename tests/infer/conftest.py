"""A tiny checkpoint taught to crop then answer with a box (real weights, see
vlm_train/testing/taught.py), shared by the inference and demo tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TAUGHT_FAMILY = "internvl"


@pytest.fixture(scope="session")
def taught(tiny_models, tmp_path_factory) -> Path:
    from vlm_train.testing.taught import teach

    return teach(TAUGHT_FAMILY, tiny_models[TAUGHT_FAMILY], tmp_path_factory.mktemp("taught"))
