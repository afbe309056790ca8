"""Session-wide fixtures: one Ray head on loopback and one tiny model per test session.

Ray and DeepSpeed start-up dominate small tests, so every Ray test shares one cluster, and
DeepSpeed's JIT-built ops are cached in TORCH_EXTENSIONS_DIR across runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ray_cluster():
    """A real `ray start --head` on 127.0.0.1, shared by the session, stopped at the end."""
    from vlm_train.testing.ray_cluster import start_head

    cluster = start_head(num_cpus=2, ray_bin_dir=str(Path(sys.executable).parent))
    yield cluster
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster.stop()


@pytest.fixture(scope="session")
def tiny_internvl(tmp_path_factory) -> Path:
    from vlm_train.models.internvl import FAMILY

    return FAMILY.tiny(tmp_path_factory.mktemp("tiny_internvl"), seed=0)


@pytest.fixture(scope="session")
def tiny_ovis2_5(tmp_path_factory) -> Path:
    from vlm_train.models.ovis2_5 import FAMILY

    return FAMILY.tiny(tmp_path_factory.mktemp("tiny_ovis2_5"), seed=0)


@pytest.fixture(scope="session")
def tiny_models(tiny_internvl, tiny_ovis2_5) -> dict[str, Path]:
    """The session's tiny checkpoint of every family, by family name."""
    return {"internvl": tiny_internvl, "ovis2_5": tiny_ovis2_5}


@pytest.fixture(scope="session")
def tiny_checkpoint(request, tmp_path_factory):
    """``tiny_checkpoint(name)``: the family's tiny checkpoint, built once per session (the
    session fixture ``tiny_<name>`` when there is one, so no family is built twice)."""
    from vlm_train.models import get_family

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            try:
                built[name] = request.getfixturevalue(f"tiny_{name}")
            except pytest.FixtureLookupError:
                built[name] = get_family(name).tiny(tmp_path_factory.mktemp(f"tiny_{name}"), seed=0)
        return built[name]

    return get
