"""`vlm-train cluster render`: formats, output file, and input errors."""

from __future__ import annotations

import yaml

from tests.cluster.helpers import POOLS_DIR, REPO, write_config
from vlm_train.cli import main as vlm_main


def test_render_each_format_to_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    cfg = write_config(tmp_path, cluster={"pool": "l40s-48gb", "pools_dir": str(POOLS_DIR), "nodes": 2})
    kinds = {}
    for fmt in ("ray-cluster", "kuberay-raycluster", "kuberay-rayjob"):
        out = tmp_path / f"{fmt}.yaml"
        rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR), "--format", fmt, "--out", str(out), "--config", str(cfg)])
        assert rc == 0, capsys.readouterr().err
        text = out.read_text()
        assert text.startswith("# Rendered by: vlm-train cluster render")
        kinds[fmt] = yaml.safe_load(text)
    assert kinds["ray-cluster"]["available_node_types"]["l40s-48gb"]["min_workers"] == 2
    assert kinds["kuberay-raycluster"]["kind"] == "RayCluster"
    job = kinds["kuberay-rayjob"]
    assert job["kind"] == "RayJob" and "cluster.nodes=2" in job["spec"]["entrypoint"]


def test_single_pool_file_and_stdout(capsys):
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR / "h100-80gb.yaml"), "--format", "kuberay-raycluster"])
    out = capsys.readouterr().out
    assert rc == 0
    groups = yaml.safe_load(out)["spec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["h100-80gb"]


def test_rayjob_without_config(capsys):
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR), "--format", "kuberay-rayjob"])
    assert rc == 2 and "kuberay-rayjob needs the job's config" in capsys.readouterr().err


def test_job_pool_not_rendered(tmp_path, capsys):
    cfg = write_config(tmp_path, cluster={"pool": "a100-80gb", "pools_dir": str(POOLS_DIR)})
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR / "h100-80gb.yaml"), "--format", "kuberay-rayjob", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "pool 'a100-80gb' is not among the rendered pools (h100-80gb)" in err


def test_job_on_cpu_pool_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path, cluster={"pool": "local-cpu", "pools_dir": str(POOLS_DIR)})
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR), "--format", "kuberay-rayjob", "--config", str(cfg)])
    assert rc == 2 and "is a CPU pool" in capsys.readouterr().err


def test_duplicate_pool_names(tmp_path, capsys):
    (tmp_path / "copy.yaml").write_text((POOLS_DIR / "h100-80gb.yaml").read_text())
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR), str(tmp_path / "copy.yaml"), "--format", "kuberay-raycluster"])
    assert rc == 2 and "two pool specs are named 'h100-80gb'" in capsys.readouterr().err


def test_missing_pools_path(tmp_path, capsys):
    rc = vlm_main(["cluster", "render", "--pools", str(tmp_path / "nope"), "--format", "ray-cluster"])
    assert rc == 2 and "no such file or directory" in capsys.readouterr().err
