"""Ray cluster-launcher YAML rendered from the pool specs, validated against Ray's own schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from tests.cluster.helpers import POOLS_DIR, REPO
from vlm_train.cluster.pools import load_pool, load_pools
from vlm_train.cluster.render_common import JobSpec
from vlm_train.cluster.render_ray import load_profile, render_ray_cluster
from vlm_train.config_base import ConfigError

RAY_SCHEMA = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
PROFILE = REPO / "cluster" / "launcher" / "aws.yaml"


def render(job: JobSpec | None = None) -> dict:
    return render_ray_cluster(load_pools(POOLS_DIR), load_profile(PROFILE), "vt", job)


def test_rendered_cluster_validates_against_ray_schema():
    cfg = yaml.safe_load(yaml.safe_dump(render()))  # what `ray up` would read back
    jsonschema.validate(cfg, RAY_SCHEMA)
    # Ray's own loader check (schema plus its extra rules on node types and head type).
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))


def test_schema_rejects_a_broken_render():
    cfg = render()
    del cfg["available_node_types"]["h100-80gb"]["node_config"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, RAY_SCHEMA)


def test_one_node_type_per_gpu_pool_with_pool_resources():
    cfg = render()
    types = cfg["available_node_types"]
    assert set(types) == {"head", "a100-80gb", "h100-80gb", "l40s-48gb"}  # local-cpu: no node type
    h100 = types["h100-80gb"]
    assert h100["resources"] == {"CPU": 192, "GPU": 8, "pool-h100-80gb": 8, "accelerator_type:H100": 1}
    assert h100["node_config"] == {"InstanceType": "p5.48xlarge"}
    assert h100["max_workers"] == 16 and h100["min_workers"] == 0
    assert h100["labels"] == {"vlm-train/pool": "h100-80gb"}
    assert types["head"]["resources"] == {"CPU": 0}
    assert cfg["max_workers"] == 16 + 16 + 8


def test_job_pool_starts_with_the_job_nodes():
    cfg = render(JobSpec(config="c.yaml", pool="l40s-48gb", nodes=3))
    assert cfg["available_node_types"]["l40s-48gb"]["min_workers"] == 3
    assert cfg["available_node_types"]["a100-80gb"]["min_workers"] == 0


def test_head_dashboard_on_loopback_and_token_auth():
    cfg = render()
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    for cmds in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token" in cmds[-1]
    assert "~/.ray/auth_token" in cfg["file_mounts"]


def test_profile_without_node_config_for_a_pool_is_an_error(tmp_path):
    prof = yaml.safe_load(PROFILE.read_text())
    del prof["pool_node_configs"]["l40s-48gb"]
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(prof))
    with pytest.raises(ConfigError, match="pool_node_configs.l40s-48gb"):
        render_ray_cluster(load_pools(POOLS_DIR), load_profile(p), "vt")


def test_cpu_only_pools_render_nothing():
    with pytest.raises(ConfigError, match="no GPU pool"):
        render_ray_cluster([load_pool(str(POOLS_DIR / "local-cpu.yaml"))], load_profile(PROFILE), "vt")
