"""Small builders shared by the cluster tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
POOLS_DIR = REPO / "cluster" / "pools"


def write_config(tmp_path: Path, name: str = "job", **sections: Any) -> Path:
    """A minimal valid job config (tiny model, synthetic data, no DeepSpeed file needed)."""
    cfg: dict[str, Any] = {"deepspeed": {"config": None}, "run": {"name": name, "storage_path": str(tmp_path / "runs")}}
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p
