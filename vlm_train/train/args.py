"""TRL trainer arguments of a stage: our defaults, the user's ``sft:``/``grpo:`` section, and
the fields the launcher owns, each listed once in ``OWNED``.

A user value for an owned field is a config error naming the key and where the launcher takes
the value from; it is never silently overridden. To hand a field to the user, delete its line
from ``OWNED`` (and put a default in ``STAGE_DEFAULTS`` if TRL's does not suit).

Light on purpose (no torch, no TRL at import): the config loader and ``--dry-run`` use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlm_train.config import ConfigError, JobConfig


@dataclass(frozen=True)
class ArgsContext:
    """What the launcher-owned values depend on."""

    cfg: JobConfig
    stage: str
    rank: int
    cuda: bool

    @property
    def dtype(self) -> str:
        return self.cfg.model.resolved_dtype(self.cuda)


@dataclass(frozen=True)
class Owned:
    source: str
    """Where the value comes from (said in the error when a user sets the field)."""
    value: Callable[[ArgsContext], Any] | None = None
    """None: reserved but left at TRL's default (the launcher sets it another way)."""


def _reward_weights(c: ArgsContext) -> list[float]:
    from vlm_train.rewards.functions import build_reward_funcs

    return build_reward_funcs(c.cfg.rewards.weights, c.cfg.rewards.iou_threshold)[1]


# Every stage: field -> where its value comes from.
OWNED: dict[str, Owned] = {
    "output_dir": Owned("the run directory (work/<stage>/rank<k>)", lambda c: str(c.cfg.run_dir.work(c.stage, c.rank))),
    "deepspeed": Owned("deepspeed.config, built for the device", lambda c: c.cfg.deepspeed.build(c.cuda, c.dtype)),
    "use_cpu": Owned("the device (CPU when no GPU is present)", lambda c: not c.cuda),
    "bf16": Owned("model.dtype", lambda c: c.dtype == "bfloat16"),
    "fp16": Owned("model.dtype", lambda c: c.dtype == "float16"),
    "local_rank": Owned("Ray Train (LOCAL_RANK of each worker)"),
    "report_to": Owned("the launcher (TensorBoard under tensorboard/<stage>)", lambda c: ["tensorboard"]),
    "seed": Owned("run.seed", lambda c: c.cfg.run.seed),
    # Resuming needs optimizer and scheduler state in every checkpoint.
    "save_only_model": Owned("the launcher (resume needs optimizer state)", lambda c: False),
    # Local copies only: Ray storage keeps run.checkpoints_to_keep.
    "save_total_limit": Owned("run.checkpoints_to_keep", lambda c: 1),
    # Our collators read the 'sample' column, which the model's forward does not name.
    "remove_unused_columns": Owned("the launcher (the collator reads the sample column)", lambda c: False),
}

# Per stage, on top of OWNED.
STAGE_OWNED: dict[str, dict[str, Owned]] = {
    # Counted for the tokens_per_second metric (our SFT trainer counts the collator's real tokens).
    "sft": {"include_num_input_tokens_seen": Owned("the launcher (tokens_per_second)", lambda c: "non_padding")},
    "grpo": {
        "reward_weights": Owned("rewards.weights", _reward_weights),
        # TRL's GRPO counts prompt and completion tokens itself. Asked to count too, the Trainer
        # looks for the model's main input (pixel_values) among the prompts and warns every step.
        "include_num_input_tokens_seen": Owned("the launcher (tokens_per_second: TRL's own count)", lambda c: "no"),
    },
}

# Our defaults where TRL's own don't suit VLM fine-tuning on these jobs; sft:/grpo: override them.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {
        "max_length": 2048,
        "per_device_train_batch_size": 2,
        "learning_rate": 2e-5,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "activation_checkpointing": False,
        # Our collator renders the canonical samples; TRL must not tokenise the dataset itself.
        "dataset_kwargs": {"skip_prepare_dataset": True},
    },
    "grpo": {
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 64,
        "learning_rate": 1e-6,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "activation_checkpointing": False,
        "temperature": 1.0,
    },
}


def owned(stage: str) -> dict[str, Owned]:
    return {**OWNED, **STAGE_OWNED[stage]}


def check_user_args(stage: str, values: dict[str, Any]) -> None:
    """Raise ConfigError for a user value of a field the launcher owns."""
    table = owned(stage)
    for k in values:
        if k == "save_safetensors":  # not a field of transformers 5, whose saves are always safetensors
            raise ConfigError(f"{stage}.{k}", "is set by the launcher: checkpoints and models are always safetensors")
        if k in table:
            raise ConfigError(f"{stage}.{k}", f"is set by the launcher from {table[k].source}; remove it from the config")
    if stage == "sft" and (values.get("dataset_kwargs") or {}).get("skip_prepare_dataset", True) is not True:
        raise ConfigError("sft.dataset_kwargs.skip_prepare_dataset", "is set by the launcher (our collator renders the samples); remove it")


def owned_values(ctx: ArgsContext) -> dict[str, Any]:
    return {k: o.value(ctx) for k, o in owned(ctx.stage).items() if o.value is not None}


def stage_kwargs(ctx: ArgsContext) -> dict[str, Any]:
    """Keyword arguments of the stage's TRL config: defaults, then the user's section, then ours."""
    user = getattr(ctx.cfg, ctx.stage)
    check_user_args(ctx.stage, user)  # also checked at load; a hand-built JobConfig gets here too
    defaults = dict(STAGE_DEFAULTS[ctx.stage])
    if ctx.stage == "sft":
        from vlm_train.train.dataloading import dataloader_defaults
        from vlm_train.train.sft_options import split_sft

        opts, user = split_sft(user)  # our batching keys never reach TRL (it refuses packing for VLMs)
        defaults.update(dataloader_defaults(ctx.cfg))
    kw = {**defaults, **user, **owned_values(ctx)}
    if ctx.stage == "sft":
        kw["dataset_kwargs"] = {**(kw.get("dataset_kwargs") or {}), "skip_prepare_dataset": True}
        if opts.group_by_length:
            kw.update(train_sampling_strategy="group_by_length", length_column_name="length")
        if ctx.cfg.data.cache == "memory" and kw.get("dataloader_num_workers"):
            kw["dataloader_persistent_workers"] = True  # a worker's memory cache must outlive the epoch
    return kw


def build_training_args(cfg: JobConfig, stage: str, rank: int, cuda: bool):
    """The stage's ``trl.SFTConfig`` / ``trl.GRPOConfig``.

    Build it before the model under ZeRO-3: it registers the DeepSpeed config globally, so
    ``from_pretrained`` partitions parameters at load.
    """
    import trl

    from vlm_train.config import TRL_SECTIONS

    return getattr(trl, TRL_SECTIONS[stage])(**stage_kwargs(ArgsContext(cfg, stage, rank, cuda)))
