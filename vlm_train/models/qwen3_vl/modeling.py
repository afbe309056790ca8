"""Per-token modality ids for transformers' Qwen3-VL, derived from ``input_ids``.

transformers' Qwen3-VL computes its M-RoPE position ids (``get_rope_index``: text positions
advance by one per token, an image's tokens take (t, h, w) grid positions and advance the text
position by max(h, w) / merge) from ``mm_token_type_ids`` (0 text, 1 image, 2 video), and
refuses a forward with ``image_grid_thw`` but without them. The processor builds them by
comparing each id with the image/video token ids. The trainers, rollouts and the GRPO scoring
forward pass only ids, attention mask and the per-image tensors (which concatenate across
images and turns), so the loaded model derives the same ids itself, in ``forward`` and in
``generate`` (where transformers computes the prompt's 3D positions once and then continues
from the stored deltas). Given explicitly, they are used as given.
"""

from __future__ import annotations

import functools
from typing import Any

import torch


def token_types(input_ids: torch.Tensor, image_token_id: int, video_token_id: int) -> torch.Tensor:
    """0 for text, 1 for image and 2 for video tokens (the processor's ``mm_token_type_ids``)."""
    out = torch.zeros_like(input_ids, dtype=torch.int32)
    out[input_ids == image_token_id] = 1
    out[input_ids == video_token_id] = 2
    return out


def derive_token_types(model: Any) -> Any:
    """Make ``model`` (a Qwen3VLForConditionalGeneration) fill ``mm_token_type_ids`` from its
    ``input_ids`` when a call has vision inputs and none. Bound on instances, not the class:
    the saved ``architectures`` stay native. The forward hook sits on the inner
    ``Qwen3VLModel`` (``model.model``), which the outer forward calls through ``__call__``, so
    it holds whatever wraps the outer model (PEFT, DeepSpeed, accelerate's precision wrapper);
    ``generate`` is wrapped too, because it computes the prompt's 3D positions before any forward."""
    ids = (model.config.image_token_id, model.config.video_token_id)

    def fill(kwargs: dict[str, Any]) -> dict[str, Any]:
        x = kwargs.get("input_ids")
        vision = kwargs.get("image_grid_thw") is not None or kwargs.get("video_grid_thw") is not None
        if vision and x is not None and kwargs.get("mm_token_type_ids") is None:
            kwargs["mm_token_type_ids"] = token_types(x, *ids)
        return kwargs

    def hook(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        if args:  # positional input_ids: move to keywords so ``fill`` sees them
            kwargs["input_ids"], args = args[0], args[1:]
        return args, fill(kwargs)

    model.model.register_forward_pre_hook(hook, with_kwargs=True)
    generate = model.generate

    @functools.wraps(generate)
    def generate_with_types(*args: Any, **kwargs: Any) -> Any:
        if args:
            kwargs["input_ids"], args = args[0], args[1:]
        return generate(*args, **fill(kwargs))

    model.generate = generate_with_types
    return model
