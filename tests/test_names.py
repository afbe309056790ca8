"""Run names are names; Kubernetes names and label values are checked before rendering."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tests.cluster.helpers import POOLS_DIR, write_config
from vlm_train.config import ConfigError, load_config

BAD_RUN_NAMES = [".", "..", "a/b", "../up", "a\\b", "x\ny", "a b", "x;rm -rf ~", "$(id)", "`id`", "a|b", "a&b",
                 "a>b", "-flag", "", "q'uote", "x" * 129]


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_bad_run_name_is_a_config_error(tmp_path, name):
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"deepspeed": {"config": None}, "run": {"name": name, "storage_path": str(tmp_path)}}))
    with pytest.raises(ConfigError, match=r"run\.name"):
        load_config(p)


@pytest.mark.parametrize("name", ["try1", "lora.r16", "A_b-3", "_x"])
def test_good_run_names(tmp_path, name):
    cfg = load_config(write_config(tmp_path, "ok"), [f"run.name={name}"])
    assert cfg.run_dir.root.name == name and cfg.run_dir.root.parent == (tmp_path / "runs")


def test_pool_names_labels_and_kube_names_are_validated(tmp_path):
    from vlm_train.cluster.pools import load_pool
    from vlm_train.cluster.render_kuberay import KubeOptions, render_raycluster

    base = yaml.safe_load((POOLS_DIR / "h100-80gb.yaml").read_text())
    for change, key in (({"name": "h100,evil=1"}, "name"), ({"labels": {"tier": "a,b=c"}}, "labels.tier"),
                        ({"labels": {"bad key": "x"}}, "labels.bad key"), ({"ray_resource": "r\nx"}, "ray_resource")):
        p = tmp_path / "p.yaml"
        p.write_text(yaml.safe_dump({**base, **change}))
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_pool(str(p))
    pool = load_pool("h100-80gb", POOLS_DIR)
    for opts, flag in ((KubeOptions(name="Vlm_Train"), "--name"), (KubeOptions(namespace="ns;x"), "--namespace")):
        with pytest.raises(ConfigError, match=flag):
            render_raycluster([pool], opts)
    assert render_raycluster([dataclasses.replace(pool)], KubeOptions(name="vlm-train-2"))["metadata"]["name"] == "vlm-train-2"
