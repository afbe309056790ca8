"""What a fault cost, read from a run's own records: the row "fault -> outcome, steps lost,
steps repeated" of the fault tests and benchmarks/faults.py.

Records used: ``stages/<stage>.resumes.jsonl`` (one line per attempt: the step it started
from, the checkpoint Ray handed over and the one resumed, a unix time) and rank 0's progress
records (``logs/<stage>/progress.jsonl``: one line per logged step with its loss and unix
time). A driver truncates the progress file when it starts, so a caller that submits a run
more than once collects the records after each submission (``read_progress``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vlm_train.run_dir import RunDir


@dataclass
class Attempt:
    start: int
    time: float
    latest: str | None = None
    chosen: str | None = None
    losses: dict[int, float] = field(default_factory=dict)
    """step -> loss, for every step this attempt finished and logged."""

    @property
    def last_done(self) -> int:
        return max(self.losses, default=self.start)


@dataclass
class FaultRow:
    fault: str
    outcome: str
    lost: int
    """Steps finished before the fault that the run had to do again (last done - resumed from)."""
    repeated: int
    """Of those, the steps the next attempt ran again (fewer when it failed before reaching them)."""
    since_checkpoint: int
    """Steps finished since the last whole checkpoint when the fault hit: the most it may cost."""
    same_losses: bool | None
    """Every repeated step logged the loss it logged before the fault (None: nothing repeated)."""


def _lines(path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def read_progress(run_dir: RunDir, stage: str) -> list[dict[str, Any]]:
    return _lines(run_dir.progress(stage))


def attempts(run_dir: RunDir, stage: str, progress: list[dict[str, Any]]) -> list[Attempt]:
    """Every attempt of ``stage`` in order, each with the steps it logged (by time)."""
    out = [Attempt(int(r["start_step"]), float(r["time"]), r.get("latest"), r.get("chosen"))
           for r in _lines(run_dir.stage_resumes(stage))]
    if any("time" not in r for r in progress) or not out:
        raise ValueError(f"{run_dir}: records without times (written by an older version)")
    for rec in sorted(progress, key=lambda r: r["time"]):
        owner = [a for a in out if a.time <= rec["time"]]
        if owner and "loss" in rec:
            owner[-1].losses[int(rec["step"])] = float(rec["loss"])
    return out


def fault_row(fault: str, before: Attempt, after: Attempt, since_checkpoint: int, failed: str = "") -> FaultRow:
    """The cost of the fault that ended ``before``; ``after``: the attempt that continued the
    stage (a restart or a resubmission). ``failed``: how the job ended when the fault stopped
    it (exit status and message), before it was resubmitted."""
    resumed = f"resumed at step {after.start}" + (f" from {after.chosen}" if after.chosen else " (from scratch)")
    if after.latest and after.chosen and after.latest != after.chosen:
        # Older than Ray's latest: that one was damaged. Newer: whole, but Ray never registered it.
        resumed += f" ({after.latest} refused)" if after.chosen < after.latest else f" (Ray's latest: {after.latest})"
    outcome = f"{failed}; resubmitted: {resumed}" if failed else resumed
    again = [s for s in after.losses if after.start < s <= before.last_done]
    same = all(after.losses[s] == before.losses[s] for s in again if s in before.losses) if again else None
    return FaultRow(fault, outcome, before.last_done - after.start, len(again), since_checkpoint, same)


def table(rows: list[FaultRow]) -> str:
    head = ("fault", "outcome", "steps lost", "steps repeated", "since ckpt", "same losses")
    body = [(r.fault, r.outcome, str(r.lost), str(r.repeated), str(r.since_checkpoint),
             "-" if r.same_losses is None else ("yes" if r.same_losses else "NO")) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths), *map(fmt, body)])
