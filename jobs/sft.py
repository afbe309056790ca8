"""Supervised fine-tuning of an InternVL3.5 or Ovis2.5 model on Ray Train + DeepSpeed + TRL.

Local (starts Ray in-process when no cluster address is given):
    python -m jobs.sft configs/debug/internvl_tiny_sft.yaml [sft.max_steps=20 run.name=try2 ...]

On a running Ray cluster:
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.sft configs/internvl3_5/8b_lora_sft.yaml

The pipeline with the one stage ``sft`` (the config's ``stages`` do not apply; no evaluation).
Exit codes: 0 done, 1 training failed, 2 bad config (nothing started), 3 stopped before the end.
"""

from __future__ import annotations

from vlm_train.launch.cli import parse, run_job


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.sft", __doc__, stages=["sft"])
    return run_job(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
