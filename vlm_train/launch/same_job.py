"""A run directory holds one job: a finished stage is reused only by the job that trained it.

Why: a pipeline submitted again skips the stages already complete. Without this check, a user
who edits the config (more SFT steps, another learning rate, other data) and submits it again
with the same ``run.name`` gets the old stage's model and figures back, labelled as the new
job's. So each training stage records, when it starts, the keys its result depends on; a
later submission that finds the stage complete but those keys changed is refused, naming
them. Keys that only steer the run (``run.*`` other than the seed, the cluster, checkpoint and
logging cadence, fault injection) may change between submissions: resuming on other nodes is
the point of resuming.
"""

from __future__ import annotations

from typing import Any

from vlm_train.config import JobConfig
from vlm_train.config_base import ConfigError
from vlm_train.redact import redact
from vlm_train.runstate import read_json, write_json_atomic

# What a trained stage's weights depend on, beyond its own section and earlier stages'.
RESULT_SECTIONS = ("model", "data", "tools", "rewards", "loss")
# Stage keys that change when or how often the job reports or saves, not what it learns.
CADENCE_KEYS = frozenset({"save_steps", "logging_steps", "eval_steps", "report_to", "save_total_limit"})


def flat(tree: Any, prefix: str) -> dict[str, Any]:
    """Nested dicts as ``{'prefix.a.b': value}``."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: tree}


def stage_keys(cfg: JobConfig, stage: str) -> dict[str, Any]:
    """The dotted keys (secrets redacted) a ``stage`` of ``cfg`` trains from, as JSON values."""
    d = redact(cfg.to_dict())
    keys: dict[str, Any] = {"run.seed": d["run"]["seed"]}
    for section in RESULT_SECTIONS:
        keys.update(flat(d[section], section))
    stages = cfg.training_stages
    for s in stages[: stages.index(stage) + 1]:  # a stage starts from the stages before it
        keys.update(flat({k: v for k, v in d[s].items() if k not in CADENCE_KEYS}, s))
    return keys


def changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``'key: old -> new'`` for every dotted key whose value differs.

    A key the old record lacks counts as unchanged while the new value is the key's default:
    a setting added to the config after the run started (at its default) builds the same job.
    """
    defaults = _defaults()
    missing = object()
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
            for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k) and not (k not in old and new.get(k) == defaults.get(k, missing))]


def _defaults() -> dict[str, Any]:
    """Every dotted key of a default ``JobConfig`` and its value."""
    d = JobConfig().to_dict()
    return {k: v for section, tree in d.items() for k, v in flat(tree, section).items()}


def record_stage(cfg: JobConfig, stage: str) -> None:
    write_json_atomic(cfg.run_dir.stage_job(stage), stage_keys(cfg, stage))


def check_stage(cfg: JobConfig, stage: str) -> None:
    """Raise ConfigError when ``stage`` in the run directory was trained by another job.

    A stage finished before this record existed has none: nothing to compare, it is reused.
    """
    old = read_json(cfg.run_dir.stage_job(stage))
    if old is None:
        return
    diff = changed(old, stage_keys(cfg, stage))
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ConfigError(
            diff[0].split(":", 1)[0],
            f"{cfg.run_dir} already holds a complete {stage} stage trained with other settings ({shown}). "
            f"A run directory holds one job: set another run.name (or run.storage_path) for this one, "
            f"or delete {cfg.run_dir} to train it there again",
            cfg.source,
        )
