"""The ``sft:`` keys this project implements itself instead of handing them to TRL.

TRL's SFTTrainer refuses ``packing`` and ``padding_free`` for vision data (and refuses any
custom collator with them), so these keys are taken out of ``sft:`` before ``SFTConfig`` is
built and drive our collator, batch sampler and loss instead:

- ``packing``: micro-batches of ``per_device_train_batch_size`` rows of at most
  ``max_length`` tokens, planned by best-fit decreasing over ``packing_buffer`` samples.
- ``padding_free``: each micro-batch of ``per_device_train_batch_size`` samples packed
  into rows of at most ``max_length`` tokens (the same samples per step as padded batches).
- ``loss_weighting``: ``token`` | ``sample`` | ``square`` (vlm_train.train.loss_weights).
- ``group_by_length``: unpacked runs draw micro-batches of similar lengths (transformers'
  length-grouped sampler over measured lengths).

No heavy imports: the config loader reads ``OWN_KEYS`` to tell our keys from TRL's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from vlm_train.config_base import ConfigError

WEIGHTINGS = ("token", "sample", "square")


@dataclass
class SFTOptions:
    packing: bool = False
    padding_free: bool = False
    packing_buffer: int = 1024
    loss_weighting: str = "token"
    group_by_length: bool = False

    @property
    def packed(self) -> bool:
        return self.packing or self.padding_free

    @property
    def needs_lengths(self) -> bool:
        return self.packing or self.group_by_length


OWN_KEYS = {f.name for f in fields(SFTOptions)}


def split_sft(sft: dict[str, Any], file: str | None = None) -> tuple[SFTOptions, dict[str, Any]]:
    """(our options, the rest for TRL's SFTConfig); bad values raise ConfigError naming ``sft.<key>``."""
    ours = {k: v for k, v in sft.items() if k in OWN_KEYS}
    rest = {k: v for k, v in sft.items() if k not in OWN_KEYS}
    for k in ("packing", "padding_free", "group_by_length"):
        if k in ours and not isinstance(ours[k], bool):
            raise ConfigError(f"sft.{k}", f"expected true/false, got {ours[k]!r}", file)
    opts = SFTOptions(**ours)
    if isinstance(opts.packing_buffer, bool) or not isinstance(opts.packing_buffer, int) or opts.packing_buffer < 1:
        raise ConfigError("sft.packing_buffer", f"must be an integer >= 1, got {opts.packing_buffer!r}", file)
    if opts.loss_weighting not in WEIGHTINGS:
        raise ConfigError("sft.loss_weighting", f"must be one of {', '.join(WEIGHTINGS)}, got {opts.loss_weighting!r}", file)
    if opts.packed and opts.group_by_length:
        raise ConfigError("sft.group_by_length", "is for padded batches; packed rows have no padding to save", file)
    if opts.packed and rest.get("max_length", 1) is None:
        raise ConfigError("sft.max_length", "packing needs a row length (max_length must not be null)", file)
    for k in ("packing_strategy", "eval_packing"):
        if k in rest:  # TRL's packing runs on its own dataset preparation, which we skip
            raise ConfigError(f"sft.{k}", "TRL's packing options do not apply; sft.packing packs by best-fit "
                              "decreasing over sft.packing_buffer samples", file)
    if rest.get("train_sampling_strategy") == "group_by_length":
        opts.group_by_length = True  # the same thing under transformers' own name
    return opts, rest
