"""Bad node-pool specs fail with one clear error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cluster.helpers import POOLS_DIR
from vlm_train.cluster.pools import load_pool, load_pools, placement_for
from vlm_train.config_base import ConfigError

GOOD = yaml.safe_load((POOLS_DIR / "l40s-48gb.yaml").read_text())


def write_pool(tmp_path: Path, **changes) -> Path:
    spec = {**GOOD, **changes}
    spec = {k: v for k, v in spec.items() if v is not ...}
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def test_shipped_pools_load():
    names = {p.name for p in load_pools(POOLS_DIR)}
    assert names == {"a100-80gb", "h100-80gb", "l40s-48gb", "local-cpu"}


@pytest.mark.parametrize(
    ("changes", "key", "reason"),
    [
        ({"gpus_per_node": ...}, "gpus_per_node", "required key missing"),
        ({"max_nodes": ...}, "max_nodes", "required key missing"),
        ({"gpus_per_node": 0}, "gpus_per_node", "accelerator L40S needs gpus_per_node >= 1"),
        ({"accelerator": "TPUv9"}, "accelerator", "unknown accelerator 'TPUv9'"),
        ({"accelerator": None}, "accelerator", "must name its accelerator"),
        ({"cpus_per_node": 0}, "cpus_per_node", "must be >= 1"),
        ({"cpus_per_worker": 40}, "cpus_per_worker", "exceeds cpus_per_node"),
        ({"gpus_per_node": "four"}, "gpus_per_node", "expected an integer"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"slurm": {"partiton": "x"}}, "slurm.partiton", "unknown key"),
    ],
)
def test_bad_spec_gives_one_clear_error(tmp_path, changes, key, reason):
    p = write_pool(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_pool(str(p))
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(p) in str(err.value)  # names the file


def test_job_asking_more_nodes_than_the_pool_has():
    pool = load_pool("l40s-48gb", POOLS_DIR)
    with pytest.raises(ConfigError) as err:
        placement_for(pool, nodes=9)
    assert err.value.key == "cluster.nodes"
    assert "asks for 9 nodes but pool 'l40s-48gb' has max_nodes 8" in err.value.reason


def test_job_asking_more_workers_per_node_than_gpus():
    pool = load_pool("l40s-48gb", POOLS_DIR)
    with pytest.raises(ConfigError, match="5 workers per node but pool 'l40s-48gb' nodes have 4 GPUs"):
        placement_for(pool, nodes=1, workers_per_node=5)


def test_unknown_pool_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown pool 'h200'.*known: a100-80gb, h100-80gb, l40s-48gb, local-cpu"):
        load_pool("h200", POOLS_DIR)


def test_not_a_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_pool(str(p))
