"""The pipeline's report: reward summaries from a stage's log history, and the stdout table."""

from __future__ import annotations

from typing import Any

from vlm_train.run_dir import RunDir
from vlm_train.runstate import read_json
from vlm_train.train.heldout import PREFIX as HELDOUT


def stage_status(run_dir: RunDir, stage: str) -> dict[str, Any] | None:
    """``stages/<stage>.json`` (written by rank 0 when a stage's training ends), or None."""
    # Damaged (truncated): None, so the stage is resumed from its checkpoint, never a crash.
    return read_json(run_dir.stage_status(stage))


def heldout_curve(run_dir: RunDir, stage: str) -> dict[str, Any]:
    """The held-out evaluations made while the stage trained (vlm_train.train.heldout)."""
    curve = [e for e in (stage_status(run_dir, stage) or {}).get("log_history", []) if f"{HELDOUT}/acc@0.5" in e]
    return {"heldout": curve} if curve else {}


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
    """A short table for stdout: one row per evaluated stage.

    Columns: held-out Acc@0.5 and mean IoU (with the crop tool live when the job has one), the
    random-shape baseline, the named-shape share (of predictions that hit some shape, the share
    that hit the named one; when the evaluation reports it), crop calls per held-out sample,
    then for GRPO the total reward at the start and end of training, the region reward of the
    crop calls at the end, crop calls per rollout, and the stage's wall time.
    """
    head = (f"{'stage':<6} {'Acc@0.5':>8} {'mIoU':>6} {'random':>7} {'named':>6} {'e.calls':>7} "
            f"{'reward0':>8} {'reward1':>8} {'region1':>8} {'calls':>6} {'wall s':>7}")
    lines = [head, "-" * len(head)]

    def f(v, w, p=3):
        return f"{v:>{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"

    for stage, e in report.items():
        ev = e.get("eval", {})
        lines.append(
            f"{stage:<6} {f(ev.get('acc'), 8)} {f(ev.get('mean_iou'), 6)} {f(ev.get('random_shape_baseline'), 7)} "
            f"{f(ev.get('named_shape_share'), 6, 2)} {f(ev.get('tool_calls'), 7, 2)} "
            f"{f(e.get('reward_start'), 8)} {f(e.get('reward_end'), 8)} {f(e.get('region_end'), 8)} "
            f"{f(e.get('tool_calls_per_rollout'), 6, 2)} {f(e.get('wall_seconds'), 7, 0)}"
        )
    for stage, e in report.items():
        if e.get("heldout"):
            points = " ".join(f"{h['step']}:{h[f'{HELDOUT}/acc@0.5']:.3f}" for h in e["heldout"])
            lines.append(f"{stage} held-out Acc@0.5 by step: {points}")
    return "\n".join(lines)
