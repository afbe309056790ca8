"""The model-family contract.

Every family folder (``vlm_train/models/<family>/``) exposes one ``FAMILY`` object of this
type. Trainers, rollouts and evaluation only ever talk to this surface, so nothing outside a
family folder branches on family names.

Conventions every family follows when rendering canonical samples:

- Tool calls: an assistant message whose content ends with a ``tool_call`` part renders the
  call as ``<tool_call>{"name": "crop", "arguments": {"bbox_2d": [x1, y1, x2, y2]}}</tool_call>``
  with the box in the family's own coordinate convention (InternVL: integers 0-1000,
  Ovis2.5: floats in [0,1) with 3 decimals). The call text is learned.
- Tool responses: a ``tool`` message (parts of type ``tool_response``, an image crop or text)
  renders as a user turn ``<|im_start|>user\n<tool_response>\n{image or text}\n</tool_response>
  <|im_end|>\n`` (Qwen3 style) and is never learned (labels -100); the assistant then continues
  in the next assistant message.
- Labels: only assistant content and its closing ``<|im_end|>`` are learned; system, user, tool
  and every vision token are -100.
- Generation prompts end with the assistant header (``<|im_start|>assistant\n``; Ovis2.5 adds
  the empty think block when thinking is off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vlm_train.data.sample import Box, Sample


class InputBuilder(Protocol):
    """Turns canonical samples into model inputs (one family's processor front-end)."""

    def __call__(
        self,
        samples: Sequence[Sample],
        *,
        images: Sequence[Sequence[Any]] | None = None,
        for_generation: bool = False,
    ) -> dict[str, Any]:
        """Build a batch.

        Args:
            samples: canonical samples.
            images: per sample, the already-loaded PIL images in the order of the sample's
                image parts (tool-response crops included). None: load from ``media`` paths.
            for_generation: build the prompt only (up to and including the assistant header
                of the last assistant turn, which is dropped), left padded.

        Returns:
            ``input_ids``, ``attention_mask``, ``labels`` (training only, -100 where not
            learned) and the family's pixel tensors (e.g. ``pixel_values``; Ovis2.5 also
            ``grid_thws``).
        """


@dataclass
class Family:
    """One VLM family's fixed surface."""

    name: str
    # ``model_type`` in the config.json of this family's checkpoints (how a checkpoint
    # directory is recognised without a job config, e.g. by export and inference).
    model_type: str
    # load(model_cfg, dtype) -> (model, processor)
    load: Callable[..., tuple[Any, Any]]
    # make_inputs(processor, cfg) -> InputBuilder (the collator used for SFT, eval, rollouts)
    make_inputs: Callable[..., InputBuilder]
    # tiny(out_dir, seed=0, **kw) -> Path: random few-M-param checkpoint + processor, offline
    tiny: Callable[..., Path]
    # Grounding text format (coordinates in the family's own convention).
    box_to_text: Callable[[Box, int, int], str]
    text_to_boxes: Callable[[str, int, int], list[Box]]
    # Prompt asking for a box for a referring expression (the family's own protocol).
    grounding_prompt: Callable[[str], str]
    # Token ids that must never be sampled (vision placeholders), given a processor.
    suppress_token_ids: Callable[[Any], list[int]]
    # Module-name prefixes for freezing: {"vision": [...], "projector": [...], "llm": [...]}
    module_groups: dict[str, list[str]] = field(default_factory=dict)
    # Default LoRA target modules (language model linear layers).
    lora_targets: list[str] = field(default_factory=list)
    # Optional hooks used by rollouts/inference (e.g. thinking budget). name -> callable
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
