"""Where a GRPO step's time goes: rollout, scoring, update (TensorBoard ``perf/*`` scalars).

- ``perf/rollout_s``: generating completions, crop calls executed live included;
- ``perf/score_s``: the rest of TRL's generate-and-score phase (rewards, old/reference
  log-probabilities);
- ``perf/update_s``: forward, backward and optimizer of the policy update;
- ``perf/<phase>_share``: each phase's share of the three (over the logging window);
- ``perf/tokens_generated_per_s`` (sampled tokens, tool turns excluded) and
  ``perf/crop_calls_per_s`` per second of rollout; ``perf/generate_calls`` per rollout
  (batched ``generate`` calls: one per tool-turn round).

Per training step, phases that did not run in that step (with ``steps_per_generation > 1``
most steps only update) count 0, so window means add up to the step time.
"""

from __future__ import annotations

import time
from typing import Any

PHASES = ("rollout", "score", "update")


class StepProfile:
    """Mixin for a GRPOTrainer subclass; call ``record_rollout`` from the rollout function."""

    def _perf_reset(self) -> None:
        self._perf = {"rollout": 0.0, "generate": 0.0}

    def record_rollout(self, seconds: float, tokens: int, calls: int, generate_calls: int) -> None:
        m = self._metrics["train" if self.model.training else "eval"]
        self._perf["rollout"] += seconds
        m["perf/tokens_generated_per_s"].append(tokens / seconds if seconds > 0 else 0.0)
        m["perf/crop_calls_per_s"].append(calls / seconds if seconds > 0 else 0.0)
        m["perf/generate_calls"].append(float(generate_calls))

    def _generate_and_score_completions(self, inputs: Any):
        t = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self._perf["generate"] += time.perf_counter() - t
        return out

    def training_step(self, *args: Any, **kwargs: Any):
        self._perf_reset()
        t = time.perf_counter()
        loss = super().training_step(*args, **kwargs)
        total = time.perf_counter() - t
        m = self._metrics["train"]
        m["perf/rollout_s"].append(self._perf["rollout"])
        m["perf/score_s"].append(max(0.0, self._perf["generate"] - self._perf["rollout"]))
        m["perf/update_s"].append(max(0.0, total - self._perf["generate"]))
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        m = self._metrics["train"]
        means = {p: sum(m[f"perf/{p}_s"]) / len(m[f"perf/{p}_s"]) for p in PHASES if m.get(f"perf/{p}_s")}
        total = sum(means.values())
        if total > 0 and len(means) == len(PHASES):
            for p in PHASES:
                m[f"perf/{p}_share"] = [means[p] / total]
        super().log(logs, start_time)
