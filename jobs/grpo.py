"""GRPO with live crop-tool rollouts and grounding rewards on Ray Train + DeepSpeed + TRL.

Local:
    python -m jobs.grpo configs/debug/internvl_tiny_grpo.yaml [grpo.max_steps=20 ...]

On a running Ray cluster:
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.grpo configs/internvl3_5/8b_lora_sft_grpo.yaml model.path=/shared/runs/x/models/sft/merged

Exit codes: 0 done, 1 training failed, 2 bad config (nothing started), 3 stopped before the end.
"""

from __future__ import annotations

from vlm_train.launch.cli import parse


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.grpo", __doc__)
    from vlm_train.launch.ray_launch import run_single_stage

    return run_single_stage(cfg, "grpo")


if __name__ == "__main__":
    raise SystemExit(main())
