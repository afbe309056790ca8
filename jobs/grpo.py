"""GRPO with live crop-tool rollouts and grounding rewards on Ray Train + DeepSpeed + TRL.

Local:
    python -m jobs.grpo configs/debug/internvl_tiny_grpo.yaml [grpo.max_steps=20 ...]

On a running Ray cluster:
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.grpo configs/internvl3_5/8b_lora_sft_grpo.yaml model.path=/shared/runs/x/models/sft/merged

Exit codes: 0 done, 1 training failed, 2 bad config (nothing started), 3 stopped before the end.
"""

from __future__ import annotations

import json
import sys

from vlm_train.launch.cli import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, parse


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.grpo", __doc__)
    from vlm_train.data.prepare import prepare_data
    from vlm_train.launch.ray_launch import materialise_model, run_stage
    from vlm_train.models import get_family
    from vlm_train.train.grpo import train_loop

    family = get_family(cfg.model.family)
    cfg = materialise_model(cfg, family)
    data = prepare_data(cfg, family)
    try:
        run_stage(cfg, "grpo", train_loop, extra={"data": data.to_json()})
    except Exception as e:  # Ray wraps worker errors; the cause is in the worker log above
        print(f"error: GRPO failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    status = json.loads((cfg.run_dir / "stages" / "grpo.json").read_text())
    print(f"grpo: steps {status['start_step']} -> {status['global_step']} of {status['max_steps']}, run dir {cfg.run_dir}")
    return EXIT_OK if status["complete"] else EXIT_STOPPED


if __name__ == "__main__":
    raise SystemExit(main())
