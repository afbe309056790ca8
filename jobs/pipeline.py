"""The configured stages in order: e.g. SFT, then GRPO from the SFT result, with grounding
evaluation of the input model and after each stage (``stages: [sft, grpo, eval]``).

Local (starts Ray in-process):
    python -m jobs.pipeline configs/debug/internvl_tiny_pipeline.yaml

On a running Ray cluster:
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.pipeline configs/internvl3_5/8b_lora_sft_grpo.yaml run.storage_path=/mnt/storage/runs

``stages: [eval]`` evaluates ``model.path`` alone. Writes <run_dir>/report.json and prints a
stage table. Submitted again, it skips finished stages.
Exit codes: 0 done, 1 a stage failed, 2 bad config (nothing started), 3 a stage stopped before the end.
"""

from __future__ import annotations

from vlm_train.launch.cli import parse, run_job


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.pipeline", __doc__)
    return run_job(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
