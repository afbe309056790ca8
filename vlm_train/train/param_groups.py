"""Per-module-group learning rates (``model.lr_scale``) for both stages' trainers.

Real VLM recipes train the parts of the model at different rates (a pretrained projector or
tower slower than the language model: ms-swift's ``vit_lr`` / ``aligner_lr``, LLaVA's
``mm_projector_lr``). The trainer builds its optimizer as usual (AdamW, weight-decay and
no-decay groups); each of those groups is then split by the family's ``module_groups`` and a
split whose group has a scale gets ``learning_rate x scale``. The scheduler is built on the
optimizer afterwards, so warmup and decay apply to every group's own rate. DeepSpeed takes the
optimizer the trainer builds (the ZeRO configs here carry no ``optimizer`` section).
"""

from __future__ import annotations

from typing import Any

import torch

# peft wraps the model: its parameters' names gain this prefix.
PEFT_PREFIX = "base_model.model."


def split_by_scale(
    param_groups: list[dict[str, Any]], names: dict[int, str], groups: dict[str, list[str]], scales: dict[str, float],
) -> list[dict[str, Any]]:
    """``param_groups`` split so that every parameter under a scaled group's prefixes sits in a
    group of its own with ``lr`` multiplied by the scale; everything else is unchanged."""
    prefixes = {g: tuple(groups.get(g, [])) for g in scales}
    for g, p in prefixes.items():
        if not p:
            raise ValueError(f"model.lr_scale.{g}: this family has no {g!r} module group")

    def scale_of(param: torch.Tensor) -> float:
        name = names[id(param)].removeprefix(PEFT_PREFIX)
        return next((scales[g] for g, p in prefixes.items() if name.startswith(p)), 1.0)

    out = []
    for group in param_groups:
        by_scale: dict[float, list[torch.Tensor]] = {}
        for param in group["params"]:
            by_scale.setdefault(scale_of(param), []).append(param)
        for s, params in by_scale.items():
            out.append({**group, "params": params, "lr": group["lr"] * s, "lr_scale": s})
    # Unscaled groups first: the trainer logs the first group's rate as ``learning_rate``, which
    # should stay the stage's configured rate.
    return sorted(out, key=lambda g: g["lr_scale"] != 1.0)


class GroupLearningRates:
    """Trainer mixin: set ``lr_groups`` (the family's module groups) and ``lr_scales`` before
    ``train``; with no scale other than 1 the trainer's own optimizer is used untouched."""

    lr_groups: dict[str, list[str]] = {}
    lr_scales: dict[str, float] = {}

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if not any(s != 1 for s in self.lr_scales.values()) or getattr(self, "_lr_scaled", False):
            return optimizer
        opt_model = self.model if model is None else model
        names = {id(p): n for n, p in opt_model.named_parameters()}
        groups = split_by_scale(optimizer.param_groups, names, self.lr_groups, self.lr_scales)
        # Regrouped in place: nothing has stepped yet, so there is no state to carry, and the
        # optimizer keeps whatever its class and the trainer's arguments configured.
        optimizer.param_groups.clear()
        for g in groups:
            optimizer.add_param_group(g)
        self._lr_scaled = True
        return optimizer
