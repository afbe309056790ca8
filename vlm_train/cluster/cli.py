"""``vlm-train cluster render``: Ray cluster-launcher YAML and KubeRay manifests from pool specs.

    vlm-train cluster render --pools cluster/pools --format ray-cluster --out cluster.yaml
    vlm-train cluster render --pools cluster/pools --format kuberay-raycluster
    vlm-train cluster render --pools cluster/pools --format kuberay-rayjob \\
        --config configs/<family>/8b_lora_sft.yaml cluster.pool=h100-80gb cluster.nodes=2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from vlm_train.config_base import ConfigError

FORMATS = ("ray-cluster", "kuberay-raycluster", "kuberay-rayjob")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlm-train cluster", description="render Ray / KubeRay manifests from node-pool specs")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="write a Ray cluster-launcher YAML or a KubeRay RayCluster / RayJob")
    r.add_argument("--pools", nargs="+", default=["cluster/pools"], help="pool spec directories and/or files")
    r.add_argument("--format", required=True, choices=FORMATS)
    r.add_argument("--out", help="write here instead of stdout")
    r.add_argument("--name", default="vlm-train", help="cluster / resource name")
    r.add_argument("--config", help="job config (required for kuberay-rayjob; sizes the job's pool)")
    r.add_argument("overrides", nargs="*", help="key=value overrides of --config")
    r.add_argument("--job", default="jobs.sft", help="job module the RayJob runs (default jobs.sft)")
    r.add_argument("--launcher", default="cluster/launcher/aws.yaml", help="launcher profile (ray-cluster)")
    r.add_argument("--image", help="container image for every pod (default: each pool's kubernetes.image)")
    r.add_argument("--namespace")
    r.add_argument("--storage-claim", default="vlm-train-storage", help="ReadWriteMany PVC for checkpoints")
    r.add_argument("--storage-mount", default="/mnt/storage")
    r.add_argument("--auth-secret", help="Secret with the Ray auth token (default: managed by KubeRay)")
    return p


def render(args: argparse.Namespace) -> dict:
    """Build the manifest the arguments ask for (raises ConfigError on bad input)."""
    from vlm_train.cluster.render_common import job_spec, load_pool_set
    from vlm_train.cluster.render_kuberay import KubeOptions, render_raycluster, render_rayjob
    from vlm_train.cluster.render_ray import load_profile, render_ray_cluster

    if args.overrides and not args.config:
        raise ConfigError("overrides", f"{args.overrides[0]!r} given without --config")
    pools = load_pool_set(args.pools)
    job = job_spec(args.config, args.overrides, args.job, pools) if args.config else None
    if args.format == "ray-cluster":
        return render_ray_cluster(pools, load_profile(args.launcher), args.name, job)
    opts = KubeOptions(name=args.name, namespace=args.namespace, image=args.image, storage_claim=args.storage_claim,
                       storage_mount=args.storage_mount.rstrip("/") or "/", auth_secret=args.auth_secret)
    if args.format == "kuberay-raycluster":
        return render_raycluster(pools, opts, job)
    if job is None:
        raise ConfigError("--config", "kuberay-rayjob needs the job's config (--config CONFIG [key=value ...])")
    return render_rayjob(pools, opts, job)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        manifest = render(args)
    except ConfigError as e:
        print(f"vlm-train cluster: {e}", file=sys.stderr)
        return 2
    from vlm_train.redact import redact_argv, redact_strings

    text = f"# Rendered by: vlm-train cluster {' '.join(redact_argv(argv if argv is not None else sys.argv[1:]))}\n"
    text += yaml.safe_dump(redact_strings(manifest), sort_keys=False, width=120)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
