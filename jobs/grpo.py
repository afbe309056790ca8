"""GRPO with live crop-tool rollouts and grounding rewards on Ray Train + DeepSpeed + TRL.

Local:
    python -m jobs.grpo configs/debug/internvl_tiny_grpo.yaml [grpo.max_steps=20 ...]

On a running Ray cluster:
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.grpo configs/internvl3_5/8b_lora_sft_grpo.yaml model.path=/mnt/storage/runs/x/models/sft/merged

The pipeline with the one stage ``grpo`` (the config's ``stages`` do not apply; no evaluation).
Exit codes: 0 done, 1 training failed, 2 bad config (nothing started), 3 stopped before the end.
"""

from __future__ import annotations

from vlm_train.launch.cli import parse, run_job


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.grpo", __doc__, stages=["grpo"])
    return run_job(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
