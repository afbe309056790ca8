"""Batch inference with a trained model: images, several per prompt, video; thinking and its
budget; the crop tool executed live through the GRPO rollout code.

Local:
    python -m jobs.infer configs/debug/internvl_tiny_infer.yaml infer.data=prompts.jsonl infer.out=out.jsonl

On a Ray cluster (Ray Data map_batches, one model actor per worker of the pool):
    ray job submit --working-dir . -- python -m jobs.infer configs/... model.path=/mnt/storage/runs/my_run

Writes one JSONL line per prompt (id, response, thinking, answer boxes, tool calls, tokens,
seconds), incrementally; infer.resume=true continues an interrupted output.
Exit codes: 0 done, 2 bad config or input (model, prompts, existing output).
"""

from __future__ import annotations

from vlm_train.launch.cli import parse


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse(argv, "jobs.infer", __doc__, trains=False)
    from vlm_train.infer.cli import run_and_report

    return run_and_report(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
