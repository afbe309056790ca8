"""What every job entry point shares: argument parsing, config errors -> exit 2, dry run, and
running the pipeline with the job's exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from vlm_train.config import ConfigError, JobConfig, dump_config, load_config
from vlm_train.launch.console import setup_console

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STOPPED = 0, 1, 2, 3


def parse(argv: list[str] | None, prog: str, doc: str, stages: list[str] | None = None,
          trains: bool = True) -> tuple[argparse.Namespace, JobConfig]:
    """Parse ``CONFIG [key=value ...] [--dry-run]``; exit 2 with a clear message on any config error.

    ``stages``: the job's own stage list, replacing the config's (jobs.sft runs [sft] alone).
    ``trains``: False for jobs that only use a model (inference, evaluation): no training data needed.
    """
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML job config")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sft.max_steps=10 run.name=try2")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved config and Ray resources, then exit")
    ap.add_argument("--verbose", action="store_true",
                    help="print every library's and worker's output on the console (also VLM_TRAIN_LOG_LEVEL=debug)")
    args = ap.parse_intermixed_args(argv)
    setup_console(args.verbose)
    try:
        cfg = load_config(args.config, args.overrides, trains=trains)  # the config's own stages are checked too
        if stages is not None:
            cfg = replace(cfg, stages=list(stages))
        from vlm_train.launch.plan import describe

        plan = describe(cfg)  # pool lookups and capacity checks happen here, before Ray
    except ConfigError as e:
        if e.file is None or e.key.startswith("cluster."):
            # Pool errors are about the job's cluster.* keys: name the job's file, and the
            # pool file when that is where the problem is.
            pool_file = f" (pool spec {e.file})" if e.file and str(e.file) != args.config else ""
            e = ConfigError(e.key, e.reason + pool_file, args.config)
        print(str(e), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if args.dry_run:
        print(dump_config(cfg))
        print("# ray resources")
        print(json.dumps(plan, indent=2))
        raise SystemExit(EXIT_OK)
    return args, cfg


def fail(msg: str, code: int = EXIT_FAILED) -> Any:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def run_job(cfg: JobConfig) -> int:
    """Run the pipeline over ``cfg.stages``; print what each stage did and the report table.

    Returns the exit code: 0 done, 1 a stage failed, 2 another driver holds the run
    directory or it holds a stage another config trained, 3 a stage stopped before its end.
    """
    from vlm_train.launch.pipeline import StageFailed, run_pipeline
    from vlm_train.launch.report import stage_status, table
    from vlm_train.runstate import RunLocked

    try:
        result = run_pipeline(cfg)
    except StageFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except RunLocked as e:  # nothing started: another driver owns the run directory
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as e:  # nothing started: e.g. the run directory holds another job's stage
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if result.stopped:
        status = stage_status(cfg.run_dir, result.stopped) or {}
        print(f"{result.stopped}: stopped at step {status.get('global_step')} of {status.get('max_steps')}; "
              f"submit again to continue from {cfg.run_dir.ray_stage(result.stopped)}")
    print(table(result.report))
    print(f"report: {cfg.run_dir.report}")
    return EXIT_STOPPED if result.stopped else EXIT_OK
