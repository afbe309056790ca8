"""Grounding evaluation of a trained model on named sets (InternVL's RefCOCO protocol).

Local (starts Ray in-process):
    python -m jobs.evaluate configs/eval/synthetic_tiny.yaml model.path=runs/internvl_tiny_pipeline

RefCOCO / RefCOCO+ / RefCOCOg (val, testA, testB, test as separate sets):
    python -m jobs.evaluate configs/eval/refcoco.yaml model.path=runs/my_run evaluation.sets[...]

``model.path`` is a checkpoint, a LoRA adapter, or a run directory (its last stage's final
model). Work is sharded over the pool's workers (one model each). Writes report.json,
predictions/<set>.jsonl and TensorBoard files to evaluation.out (default <run dir>/evaluate) and
prints a table. Exit codes: 0 done, 1 failed, 2 bad config or data (nothing started).
"""

from __future__ import annotations

import sys

from vlm_train.launch.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, parse


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.evaluate", __doc__, trains=False)
    from vlm_train.config import ConfigError
    from vlm_train.data.errors import DataError
    from vlm_train.eval.job import run_evaluation, table
    from vlm_train.infer.source import SourceError

    if not cfg.evaluation.sets:
        print(f"config error: {cfg.source}: evaluation.sets: no evaluation set given", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = run_evaluation(cfg)
    except (ConfigError, SourceError, DataError) as e:
        print(str(e) if isinstance(e, ConfigError) else f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as e:  # Ray wraps worker errors; the cause is in the worker log above
        print(f"error: evaluation failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(table(report))
    print(f"report: {report['report']}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
