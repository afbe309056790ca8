"""``vlm-train slurm submit``: sbatch a job on a node pool through cluster/slurm/vlm_train.sbatch.

    vlm-train slurm submit configs/<family>/8b_lora_sft.yaml --pool h100-80gb --nodes 2 run.name=try1
    vlm-train slurm submit CONFIG --pool l40s-48gb --nodes 1 --dry-run     # print, submit nothing

The sbatch directives (nodes, CPUs, memory, GPUs / gres, partition, time, account, qos,
constraint) come from the pool spec; ``cluster.pool`` and ``cluster.nodes`` are appended to
the overrides so the job's placement matches the allocation. The config is validated first:
a bad config or a pool too small fails here, not after hours in the queue.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from vlm_train.config_base import ConfigError

USAGE = "usage: vlm-train slurm submit CONFIG --pool NAME --nodes N [key=value ...] [--dry-run]"


def _parser() -> argparse.ArgumentParser:
    s = argparse.ArgumentParser(prog="vlm-train slurm submit", description="sbatch CONFIG on POOL x NODES")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", help="key=value config overrides")
    s.add_argument("--pool", required=True, help="pool name (cluster/pools/NAME.yaml) or a pool YAML path")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--pools-dir", default=None, help="default: the config's cluster.pools_dir")
    s.add_argument("--job", default="jobs.sft", help="job module (jobs.sft, jobs.grpo, jobs.pipeline, ...)")
    s.add_argument("--time", help="wall-time limit (default: the pool's slurm.time)")
    s.add_argument("--exclusive", action="store_true", help="whole nodes only (no other job shares them)")
    s.add_argument("--sbatch-arg", action="append", default=[], help="extra sbatch option, e.g. --sbatch-arg=--mail-type=END")
    s.add_argument("--dry-run", action="store_true", help="print the directives and the sbatch command; submit nothing")
    return s


def plan(args: argparse.Namespace) -> tuple[list[str], str, Path]:
    """Validate the job and build the sbatch command; returns (argv, #SBATCH header, run dir)."""
    from vlm_train.cluster.pools import load_pool
    from vlm_train.cluster.slurm import SlurmRequest, sbatch_command
    from vlm_train.config import load_config

    if args.nodes < 1:
        raise ConfigError("--nodes", f"must be >= 1, got {args.nodes}")
    overrides = list(args.overrides)
    from vlm_train.redact import check_override

    for extra in args.sbatch_arg:  # --export=ALL,HF_TOKEN=... would put the token in sbatch's argv
        refused = check_override(extra.lstrip("-")) or next(
            (check_override(part) for part in extra.split(",") if check_override(part)), None)
        if refused:
            raise ConfigError("--sbatch-arg", refused)
    # Validate the config as given first, so its own errors name its own keys.
    base = load_config(args.config, overrides, check_trl=True)
    pools_dir = args.pools_dir or base.cluster.pools_dir
    pool = load_pool(args.pool, pools_dir)
    pool_ref = args.pool if args.pool.endswith((".yaml", ".yml")) else pool.name
    overrides += [f"cluster.pool={pool_ref}", f"cluster.nodes={args.nodes}"]
    if args.pools_dir:
        overrides.append(f"cluster.pools_dir={args.pools_dir}")
    cfg = load_config(args.config, overrides, check_trl=False)
    run_dir = cfg.run_dir
    req = SlurmRequest(pool=pool, nodes=args.nodes, job_name=f"vlm_train-{cfg.run.name}",
                       output=str(run_dir.slurm_log("%j")), exclusive=args.exclusive, time=args.time,
                       extra=list(args.sbatch_arg))
    argv = sbatch_command(req, args.config, overrides, args.job)
    return argv, req.script_header(), run_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] != "submit":
        print(f"vlm-train slurm: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    # Intermixed: overrides may come before or after the options.
    args = _parser().parse_intermixed_args(argv[1:])
    from vlm_train.cluster.slurm import shell_line

    try:
        cmd, header, run_dir = plan(args)
    except ConfigError as e:
        print(f"vlm-train slurm: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        from vlm_train.redact import redact_argv, redact_text

        print(redact_text(header))
        print(shell_line(redact_argv(cmd)))
        return 0
    if shutil.which("sbatch") is None:
        print("vlm-train slurm: sbatch not found on PATH (run this on a SLURM login node)", file=sys.stderr)
        return 2
    # The batch log goes to the run dir: SLURM does not create missing directories.
    run_dir.root.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"vlm-train slurm: sbatch failed ({r.returncode}): {r.stderr.strip()}", file=sys.stderr)
        return r.returncode
    job_id = r.stdout.strip().split(";")[0]
    print(f"submitted job {job_id}; log: {run_dir.slurm_log(job_id)}; Ray/job logs: {run_dir.slurm_dir(job_id)}/")
    return 0
