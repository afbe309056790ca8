"""Python half of the SLURM wrapper (cluster/slurm/vlm_train.sbatch).

    python -m vlm_train.cluster.wrapper_helper info CONFIG [key=value ...]   # shell assignments
    python -m vlm_train.cluster.wrapper_helper wait --dashboard URL --nodes N [--pid P ...]
    python -m vlm_train.cluster.wrapper_helper submit --dashboard URL --submission-id ID -- CMD ...
    python -m vlm_train.cluster.wrapper_helper stop --dashboard URL --submission-id ID

Kept in Python so that config parsing, pool lookup and the job API are the library's own
code (and tested), while the sbatch script stays a readable sequence of steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from vlm_train.config_base import ConfigError

# Never shipped with the job's working_dir: run outputs, VCS data, build debris.
DEFAULT_EXCLUDES = ["runs/", ".git/", ".venv/", "*.egg-info/", ".pytest_cache/", "__pycache__/", "*.pyc"]


def job_info(config: str, overrides: list[str], nodes: int | None = None) -> dict[str, object]:
    """Resolve what the wrapper needs from a job config: run dir, pool and its Ray node options.

    Args:
        config: The job's YAML.
        overrides: Its ``key=value`` overrides.
        nodes: Nodes actually allocated; checked against the pool instead of ``cluster.nodes``.
    """
    from vlm_train.cluster.node_resources import ray_start_args
    from vlm_train.cluster.pools import load_pool, placement_for
    from vlm_train.config import load_config

    cfg = load_config(config, overrides, check_trl=False)
    asked = cfg.cluster.nodes
    pool = load_pool(cfg.cluster.pool, cfg.cluster.pools_dir)
    placement = placement_for(pool, nodes or asked, cfg.cluster.workers_per_node)
    return {
        "VT_RUN_DIR": str(cfg.run_dir),
        "VT_STORAGE_PATH": str(Path(cfg.run.storage_path).absolute()),
        "VT_POOL": pool.name,
        "VT_CONFIG_NODES": str(asked),
        "VT_WORLD_SIZE": str(placement.num_workers),
        "VT_RAY_NODE_ARGS": ray_start_args(pool),
    }


def _shell(assignments: dict[str, object]) -> str:
    lines = []
    for k, v in assignments.items():
        if isinstance(v, list):
            lines.append(f"{k}=({' '.join(shlex.quote(str(x)) for x in v)})")
        else:
            lines.append(f"{k}={shlex.quote(str(v))}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vlm_train.cluster.wrapper_helper")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="print shell assignments describing CONFIG")
    i.add_argument("config")
    i.add_argument("overrides", nargs="*")
    i.add_argument("--nodes", type=int, default=None, help="nodes in the allocation")
    w = sub.add_parser("wait", help="wait until N Ray nodes are alive")
    w.add_argument("--dashboard", required=True)
    w.add_argument("--nodes", type=int, required=True)
    w.add_argument("--timeout", type=float, default=300.0)
    w.add_argument("--pid", type=int, action="append", default=[], help="node runtime pid to watch")
    s = sub.add_parser("submit", help="submit a Ray job, stream its log, exit with its status")
    s.add_argument("--dashboard", required=True)
    s.add_argument("--submission-id", required=True)
    s.add_argument("--working-dir", default=".")
    s.add_argument("--exclude", action="append", default=[], help="extra working_dir exclude pattern")
    s.add_argument("--entrypoint-resources", default=None, help="JSON dict of resources for the driver")
    s.add_argument("--entrypoint-num-cpus", type=float, default=None)
    s.add_argument("--entrypoint-num-gpus", type=float, default=None)
    s.add_argument("entrypoint", nargs=argparse.REMAINDER)
    t = sub.add_parser("stop", help="stop a Ray job")
    t.add_argument("--dashboard", required=True)
    t.add_argument("--submission-id", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from vlm_train.cluster import ray_jobs

    if args.cmd == "info":
        try:
            print(_shell(job_info(args.config, args.overrides, args.nodes)))
        except ConfigError as e:
            print(f"vlm-train: {e}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "wait":
        try:
            ray_jobs.wait_for_nodes(args.dashboard, args.nodes, args.timeout, args.pid)
        except ray_jobs.ClusterStartError as e:
            print(f"vlm-train: {e}", file=sys.stderr)
            return 1
        return 0
    if args.cmd == "stop":
        return 0 if ray_jobs.stop_job(args.dashboard, args.submission_id) else 1
    cmd = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not cmd:
        print("vlm-train: submit needs an entrypoint after --", file=sys.stderr)
        return 2
    resources = None
    if args.entrypoint_resources:
        try:
            resources = {str(k): float(v) for k, v in json.loads(args.entrypoint_resources).items()}
        except (ValueError, AttributeError) as e:
            print(f"vlm-train: --entrypoint-resources must be a JSON object of numbers: {e}", file=sys.stderr)
            return 2
    runtime_env = {
        "working_dir": args.working_dir,
        "excludes": DEFAULT_EXCLUDES + args.exclude,
        # Big working dirs and cold package caches take a while on a fresh cluster.
        "config": {"setup_timeout_seconds": 900},
    }
    return ray_jobs.submit_and_follow(
        args.dashboard, shlex.join(cmd), args.submission_id, runtime_env,
        entrypoint_resources=resources, entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_num_gpus=args.entrypoint_num_gpus,
    )


if __name__ == "__main__":
    raise SystemExit(main())
