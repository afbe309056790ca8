"""KubeRay RayCluster / RayJob manifests, validated against KubeRay's CRD schemas (copied in
tests/cluster/schemas/kuberay with their source note)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.cluster.helpers import POOLS_DIR
from vlm_train.cluster.pools import load_pools
from vlm_train.cluster.render_common import JobSpec
from vlm_train.cluster.render_kuberay import KubeOptions, render_raycluster, render_rayjob

SCHEMAS = Path(__file__).parent / "schemas" / "kuberay"


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / f"{kind}.v1.json").read_text())["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def validate(kind: str, manifest: dict) -> None:
    # Round-trip through YAML: what kubectl would send.
    doc = yaml.safe_load(yaml.safe_dump(manifest))
    errors = sorted(crd_validator(kind).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


JOB = JobSpec(config="configs/internvl3_5/8b_lora_sft.yaml", overrides=["run.name=k8s"], pool="h100-80gb", nodes=2)


def test_raycluster_validates_against_crd():
    validate("raycluster", render_raycluster(load_pools(POOLS_DIR), KubeOptions(namespace="ml")))


def test_rayjob_validates_against_crd():
    validate("rayjob", render_rayjob(load_pools(POOLS_DIR), KubeOptions(), JOB))


def test_crd_schema_catches_a_broken_manifest():
    m = render_raycluster(load_pools(POOLS_DIR), KubeOptions())
    del m["spec"]["workerGroupSpecs"][0]["groupName"]
    m["spec"]["workerGroupSpecs"][1]["replicas"] = "two"
    assert len(list(crd_validator("raycluster").iter_errors(m))) == 2


def test_one_worker_group_per_gpu_pool_with_gpu_limits_and_placement():
    spec = render_raycluster(load_pools(POOLS_DIR), KubeOptions())["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"a100-80gb", "h100-80gb", "l40s-48gb"}
    g = groups["l40s-48gb"]
    pod = g["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "4"
    assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (g["minReplicas"], g["maxReplicas"], g["replicas"]) == (0, 8, 0)
    # `ray start --resources` receives the quoted JSON KubeRay expects.
    assert json.loads(json.loads(g["rayStartParams"]["resources"])) == {"pool-l40s-48gb": 4}
    assert g["rayStartParams"]["labels"] == "vlm-train/pool=l40s-48gb"


def test_shared_volume_mounted_on_head_and_every_worker():
    spec = render_raycluster(load_pools(POOLS_DIR), KubeOptions(storage_claim="ckpt", storage_mount="/mnt/storage"))["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        assert {"name": "storage", "persistentVolumeClaim": {"claimName": "ckpt"}} in pod["volumes"]
        assert {"name": "storage", "mountPath": "/mnt/storage"} in pod["containers"][0]["volumeMounts"]


def test_head_takes_no_training_work_and_auth_is_token():
    spec = render_raycluster(load_pools(POOLS_DIR), KubeOptions(auth_secret="ray-token"))["spec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert head["serviceType"] == "ClusterIP"
    assert spec["authOptions"] == {"mode": "token", "secretName": "ray-token"}


def test_rayjob_runs_the_job_on_its_pool_with_shared_storage():
    job = render_rayjob(load_pools(POOLS_DIR), KubeOptions(storage_mount="/mnt/storage"), JOB)["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:4] == ["python", "-m", "jobs.sft", "configs/internvl3_5/8b_lora_sft.yaml"]
    assert {"run.name=k8s", "cluster.pool=h100-80gb", "cluster.nodes=2", "run.storage_path=/mnt/storage/runs"} <= set(argv)
    groups = {g["groupName"]: g["replicas"] for g in job["rayClusterSpec"]["workerGroupSpecs"]}
    assert groups == {"a100-80gb": 0, "h100-80gb": 2, "l40s-48gb": 0}
    assert job["shutdownAfterJobFinishes"] is True and job["entrypointNumCpus"] == 0


@pytest.mark.parametrize("bad", [{"minReplicas": "zero"}, {"template": {"spec": {"containers": "x"}}}])
def test_crd_rejects_bad_group_fields(bad):
    m = render_raycluster(load_pools(POOLS_DIR), KubeOptions())
    m["spec"]["workerGroupSpecs"][0].update(bad)
    assert list(crd_validator("raycluster").iter_errors(m))
