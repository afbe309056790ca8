"""Python half of the SLURM wrapper (cluster/slurm/vlm_train.sbatch).

    python -m vlm_train.cluster.wrapper_helper info [--check-allocation] CONFIG [key=value ...]   # shell assignments
    python -m vlm_train.cluster.wrapper_helper wait --dashboard URL --nodes N [--pid P ...]
    python -m vlm_train.cluster.wrapper_helper submit --dashboard URL --submission-id ID -- CMD ...
    python -m vlm_train.cluster.wrapper_helper stop --dashboard URL --submission-id ID

Kept in Python so that config parsing, pool lookup and the job API are the library's own
code (and tested), while the sbatch script stays a readable sequence of steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from vlm_train.config_base import ConfigError

# Never shipped with the job's working_dir: everything the project writes there at run time
# (a file that grows while Ray hashes and zips the package makes the job's runtime_env setup
# fail), plus VCS data and build debris.  .gitignore lists the same, for plain `ray job submit`.
RUNTIME_EXCLUDES = [
    "runs/",                         # the default run.storage_path: checkpoints, TensorBoard, models
    "slurm-*.out", "slurm-*.err",    # sbatch's default batch log, in the submit dir
    "tensorboard/", "*.log", ".ray_auth_token", ".cache/",
    "*.egg-info/", "build/", ".pytest_cache/", "__pycache__/", "*.pyc",
]
DEFAULT_EXCLUDES = [*RUNTIME_EXCLUDES, ".git/", ".venv/"]


def excludes_for(working_dir: str | Path, paths: list[str]) -> list[str]:
    """Anchored exclude patterns for those of ``paths`` inside ``working_dir`` (others need none).

    The wrapper passes its run storage and batch log paths here: whatever the config or
    ``--output`` say, nothing it writes while the job starts is packaged.
    """
    root = Path(working_dir).resolve()
    out = []
    for p in paths:
        try:
            rel = Path(p).resolve().relative_to(root)
        except ValueError:
            continue
        if rel.parts:
            out.append("/" + rel.as_posix())
        else:  # the working dir itself holds the run outputs: keep only the sources
            raise ValueError(f"{p} is the job's working dir itself; put run.storage_path in a folder of its own")
    return out


def _resolve(config: str, overrides: list[str], nodes: int | None):
    from vlm_train.cluster.pools import load_pool, placement_for
    from vlm_train.config import load_config

    cfg = load_config(config, overrides, check_trl=False)
    pool = load_pool(cfg.cluster.pool, cfg.cluster.pools_dir)
    try:
        placement = placement_for(pool, nodes or cfg.cluster.nodes, cfg.cluster.workers_per_node)
    except ConfigError as e:
        if nodes and e.key == "cluster.nodes":
            raise ConfigError(e.key, f"{e.reason} (the allocation's node count: ask for at most --nodes={pool.max_nodes})", e.file) from None
        raise
    return cfg, pool, placement


def job_info(config: str, overrides: list[str], nodes: int | None = None) -> dict[str, object]:
    """Resolve what the wrapper needs from a job config: run dir, pool and its Ray node options.

    Args:
        config: The job's YAML.
        overrides: Its ``key=value`` overrides.
        nodes: Nodes actually allocated; checked against the pool instead of ``cluster.nodes``.
    """
    from vlm_train.cluster.node_resources import ray_start_args

    cfg, pool, placement = _resolve(config, overrides, nodes)
    return {
        "VT_RUN_DIR": str(cfg.run_dir),
        "VT_STORAGE_PATH": str(Path(cfg.run.storage_path).absolute()),
        "VT_POOL": pool.name,
        "VT_CONFIG_NODES": str(cfg.cluster.nodes),
        "VT_WORLD_SIZE": str(placement.num_workers),
        "VT_RAY_NODE_ARGS": ray_start_args(pool),
    }


def allocation_problems(config: str, overrides: list[str], env: dict[str, str]) -> list[str]:
    """What the SLURM allocation described by ``env`` lacks for the job (empty: it fits)."""
    from vlm_train.cluster.allocation import Allocation, misfits

    alloc = Allocation.from_env(env)
    cfg, _, placement = _resolve(config, overrides, alloc.nodes)
    return misfits(alloc, placement, cfg.cluster.nodes)


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
    i.add_argument("--check-allocation", action="store_true",
                   help="first check the SLURM allocation (SLURM_* environment) holds the job; exit 2 if not")
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
    s.add_argument("--exclude-path", action="append", default=[],
                   help="a file or folder written during the job: excluded when inside the working dir")
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
            problems = allocation_problems(args.config, args.overrides, dict(os.environ)) if args.check_allocation else []
            if problems:
                print("vlm-train: the SLURM allocation cannot hold this job (it would wait for resources forever):\n"
                      + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
                return 2
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
    try:
        excludes = DEFAULT_EXCLUDES + args.exclude + excludes_for(args.working_dir, args.exclude_path)
    except ValueError as e:
        print(f"vlm-train: {e}", file=sys.stderr)
        return 2
    runtime_env = {
        "working_dir": args.working_dir,
        "excludes": excludes,
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
