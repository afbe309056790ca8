"""The pipeline's report: reward summaries from a stage's log history, and the stdout table."""

from __future__ import annotations

from typing import Any

from vlm_train.run_dir import RunDir
from vlm_train.runstate import read_json


def stage_status(run_dir: RunDir, stage: str) -> dict[str, Any] | None:
    """``stages/<stage>.json`` (written by rank 0 when a stage's training ends), or None."""
    # Damaged (truncated): None, so the stage is resumed from its checkpoint, never a crash.
    return read_json(run_dir.stage_status(stage))


def reward_summary(run_dir: RunDir, stage: str) -> dict[str, Any]:
    status = stage_status(run_dir, stage)
    hist = [e for e in (status or {}).get("log_history", []) if "reward" in e]
    if not hist:
        return {}
    keys = sorted(k for k in hist[0] if k.startswith("rewards/") and k.endswith("/mean"))
    k = max(1, len(hist) // 4)  # mean over the first and last quarter of logged steps
    first, last = hist[:k], hist[-k:]

    def mean(rows, key):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else None

    out = {"reward_start": mean(first, "reward"), "reward_end": mean(last, "reward")}
    for key in keys:
        out[f"{key[len('rewards/'):-len('/mean')]}_start"] = mean(first, key)
        out[f"{key[len('rewards/'):-len('/mean')]}_end"] = mean(last, key)
    calls = mean(hist, "tools/calls_per_rollout")
    if calls is not None:
        out["tool_calls_per_rollout"] = calls
    return out


def table(report: dict[str, Any]) -> str:
    """A short table for stdout: one row per evaluated stage."""
    head = f"{'stage':<6} {'Acc@0.5':>8} {'mIoU':>6} {'random':>7} {'reward0':>8} {'reward1':>8} {'calls':>6} {'wall s':>7}"
    lines = [head, "-" * len(head)]

    def f(v, w, p=3):
        return f"{v:>{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"

    for stage, e in report.items():
        ev = e.get("eval", {})
        lines.append(
            f"{stage:<6} {f(ev.get('acc'), 8)} {f(ev.get('mean_iou'), 6)} {f(ev.get('random_shape_baseline'), 7)} "
            f"{f(e.get('reward_start'), 8)} {f(e.get('reward_end'), 8)} {f(e.get('tool_calls_per_rollout'), 6, 2)} "
            f"{f(e.get('wall_seconds'), 7, 0)}"
        )
    return "\n".join(lines)
