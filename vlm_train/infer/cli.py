"""`vlm-train infer MODEL --data FILE --out FILE [...]`: batch inference without a config file
(the same code as ``python -m jobs.infer CONFIG``; see vlm_train/infer/run.py for the output)."""

from __future__ import annotations

import argparse
import json
import sys

from vlm_train.config import ConfigError, InferConfig, JobConfig, ModelConfig, absolutise

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


def run_and_report(cfg: JobConfig) -> int:
    """Run inference; bad input (config, model, prompts, output) -> exit 2 with one clear message."""
    from vlm_train.infer.engine import PromptTooLong
    from vlm_train.infer.prompts import PromptError
    from vlm_train.infer.run import OutputExists, run_inference
    from vlm_train.infer.source import SourceError

    try:
        summary = run_inference(cfg)
    except (ConfigError, SourceError, PromptError, OutputExists, PromptTooLong) as e:
        print(str(e) if isinstance(e, ConfigError) else f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    print(json.dumps(summary))
    return EXIT_OK


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vlm-train infer", description=__doc__)
    ap.add_argument("model", help="run directory, checkpoint, export or LoRA adapter")
    ap.add_argument("--data", required=True, help="prompts: any readable data format or plain prompts JSONL")
    ap.add_argument("--out", required=True, help="output JSONL")
    ap.add_argument("--resume", action="store_true", help="skip ids already in --out")
    ap.add_argument("--format", default="auto")
    ap.add_argument("--image-root")
    ap.add_argument("--thinking", action="store_true", help="thinking mode on")
    ap.add_argument("--thinking-budget", type=int)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--sample", action="store_true", help="sample (default: greedy)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-calls", type=int, default=2, help="crop-tool calls per prompt (0: tool off)")
    ap.add_argument("--num-frames", type=int, default=8, help="frames sampled per video")
    ap.add_argument("--engine", choices=("auto", "local", "ray"), default="auto")
    ap.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from vlm_train.infer.source import SourceError, resolve

    try:
        family = resolve(a.model).family.name
        cfg = JobConfig()
        cfg.model = ModelConfig(family=family, path=a.model, dtype=a.dtype)
        cfg.infer = InferConfig(
            data=a.data, format=a.format, image_root=a.image_root, out=a.out, resume=a.resume, thinking=a.thinking,
            thinking_budget=a.thinking_budget, max_new_tokens=a.max_new_tokens, do_sample=a.sample,
            temperature=a.temperature, top_p=a.top_p, batch_size=a.batch_size, tools=a.max_calls > 0, engine=a.engine,
        )
        cfg.infer.validate("infer")
        cfg.tools.max_calls = max(a.max_calls, 0)
        cfg.data.num_frames = a.num_frames
        cfg.data.on_error = "raise"
        cfg.cluster.address = a.address
        absolutise(cfg)
    except (SourceError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    return run_and_report(cfg)
