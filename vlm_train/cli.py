"""`vlm-train` command line: a thin dispatcher to one module per command group.

Each group lives with the code it drives and exposes ``main(argv: list[str]) -> int``,
so adding a group never touches another group's code.
"""

from __future__ import annotations

import importlib
import sys

GROUPS: dict[str, tuple[str, str]] = {
    "data": ("vlm_train.data.cli", "read, convert, check, synthesise data; sample video frames"),
    "slurm": ("vlm_train.cluster.slurm_cli", "render and submit SLURM jobs from node-pool specs"),
    "cluster": ("vlm_train.cluster.cli", "render Ray / KubeRay manifests from node-pool specs"),
    "tiny": ("vlm_train.testing.cli", "write a tiny random checkpoint of a family (offline)"),
    "infer": ("vlm_train.infer.cli", "answer a file of prompts with a trained model (JSONL out, resumable)"),
    "web": ("vlm_train.infer.web", "a Gradio chat demo of a trained model (loopback by default)"),
    "export": ("vlm_train.infer.export", "export a trained model for serving (official layout, LoRA merged)"),
}


def _usage() -> str:
    lines = ["usage: vlm-train GROUP ...", "", "groups:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in GROUPS.items()]
    lines += ["", "jobs run as modules: python -m jobs.sft|jobs.grpo|jobs.pipeline|jobs.evaluate|jobs.infer CONFIG [key=value ...]"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    group, rest = argv[0], argv[1:]
    if group not in GROUPS:
        print(f"vlm-train: unknown group {group!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(GROUPS[group][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
