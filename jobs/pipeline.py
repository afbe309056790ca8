"""SFT, then GRPO from the SFT result, with grounding evaluation before and after each stage.

Local (starts Ray in-process):
    python -m jobs.pipeline configs/debug/internvl_tiny_pipeline.yaml

On a running Ray cluster:
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.pipeline configs/internvl3_5/8b_lora_sft_grpo.yaml run.storage_path=/shared/runs

Writes <run_dir>/report.json and prints a stage table. Submitted again, it skips finished stages.
Exit codes: 0 done, 1 a stage failed, 2 bad config (nothing started).
"""

from __future__ import annotations

import sys

from vlm_train.launch.cli import EXIT_FAILED, EXIT_OK, parse


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.pipeline", __doc__)
    from vlm_train.launch.pipeline import run_pipeline, table

    try:
        report = run_pipeline(cfg)
    except Exception as e:  # Ray wraps worker errors; the cause is in the worker log above
        print(f"error: pipeline failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(table(report))
    print(f"report: {cfg.run_dir / 'report.json'}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
