"""The model-family contract (docs/design.md, "The family contract").

Every family folder (``vlm_train/models/<family>/``) exposes one frozen ``FAMILY`` of type
``Family`` and registers its module path in ``vlm_train/models/__init__.py``. Trainers,
rollouts, evaluation, inference, rewards and data checks talk only to this surface, so nothing
outside a family folder branches on family names.

Rendering rules every family follows (the family's ``chat`` holds the texts):

- Tool calls: an assistant message whose content ends with a ``tool_call`` part renders the
  call as ``chat.tool_call("crop", {"bbox_2d": [..]})`` with the box in the family's ``coords``
  convention. The call text is learned.
- Tool responses: a ``tool`` message renders as a user turn wrapping the crop (or text) in the
  tool-response tags, never learned (labels -100); the assistant continues in the next message.
- Labels: only assistant content and its closing turn end are learned; system, user, tool and
  every vision token are -100.
- Generation prompts end with ``chat.assistant_header(enable_thinking)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vlm_train.data.coords import CoordConvention
from vlm_train.data.sample import Box, Sample
from vlm_train.models.chat import ChatFormat

if TYPE_CHECKING:
    from vlm_train.config import JobConfig, ModelConfig

IGNORE = -100
"""The label of a token that is not learned (the loss ignores it), for every family."""


@dataclass(frozen=True)
class InputsConfig:
    """Everything an input builder needs besides the processor; the same for every family.

    Attributes:
        image_roots: folders relative media paths resolve against (and are confined to).
        max_length: truncate longer samples (never inside a vision span); None: no limit.
        max_image_pixels: refuse larger images (decompression bombs).
        min_crop_size: smallest side of a tool crop, in pixels.
        num_frames: frames sampled per video (None: the processor's default).
        max_tiles: dynamic-tiling limit per image where the family tiles (None: its default).
        enable_thinking: generation prompts leave thinking open (no empty think block).
    """

    image_roots: tuple[str, ...] = ()
    max_length: int | None = None
    max_image_pixels: int = 64_000_000
    min_crop_size: int = 4
    num_frames: int | None = None
    max_tiles: int | None = None
    enable_thinking: bool = False

    @classmethod
    def from_job(
        cls, cfg: JobConfig | None, image_roots: Sequence[str] = (), max_length: int | None = None, **kw: Any
    ) -> InputsConfig:
        """The one place a JobConfig becomes an ``InputsConfig`` (None: the defaults)."""
        if cfg is not None:
            kw = dict(
                max_image_pixels=cfg.data.max_image_pixels,
                min_crop_size=cfg.tools.min_crop_size,
                num_frames=cfg.data.num_frames,
                max_tiles=cfg.model.max_tiles,
            ) | kw
        return cls(image_roots=tuple(str(r) for r in image_roots), max_length=max_length, **kw)


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
            learned) and the family's pixel tensors (e.g. ``pixel_values``, ``grid_thws``).
        """

    # Token id the builder pads rows with (the packed collator pads its row tails with it).
    pad_id: int


def concat_visuals(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Vision tensors of several samples as one batch's: each key concatenated along dim 0 in
    sample order (e.g. a tiled family's tiles; a native-resolution family's patch rows and grid
    rows)."""
    import torch

    keys = list(dict.fromkeys(k for p in parts for k in p))
    return {k: torch.cat([p[k] for p in parts if k in p]) for k in keys}


class LoadFn(Protocol):
    def __call__(self, model_cfg: ModelConfig, dtype: Any = None) -> tuple[Any, Any]:
        """(model, processor) from ``model_cfg.path``, never with trust_remote_code."""


class MakeInputsFn(Protocol):
    def __call__(self, processor: Any, cfg: InputsConfig) -> InputBuilder:
        """The family's batch collator (used for SFT, eval and rollouts)."""


class TinyFn(Protocol):
    def __call__(self, out_dir: str | Path, seed: int = 0, **kw: Any) -> Path:
        """Write a random few-M-parameter checkpoint + processor offline; return its folder."""


class BoxToTextFn(Protocol):
    def __call__(self, box: Box, width: int, height: int) -> str:
        """A pixel box of a ``width`` x ``height`` original image as the family's answer text."""


class TextToBoxesFn(Protocol):
    def __call__(self, text: str, width: int, height: int) -> list[Box]:
        """Every box the family's syntax finds in ``text``, in original-image pixels."""


class AnswerFn(Protocol):
    def __call__(self, phrase: str, box: Box, width: int, height: int) -> str:
        """The family's whole answer to its grounding prompt for ``phrase`` (official form)."""


class PromptFn(Protocol):
    def __call__(self, phrase: str) -> str:
        """The family's grounding question for a referring expression."""


class TokenIdsFn(Protocol):
    def __call__(self, processor: Any) -> list[int]:
        """Token ids, given the family's processor."""


@dataclass(frozen=True)
class FoundBox:
    """A box or point in a family's answer syntax, as written (converted by the rewards).

    Attributes:
        start: offset in the text searched.
        values: the raw numbers as written: 4 for a box, 2 for a point.
        form: the syntax's name (e.g. quad_box, pair_box, pair_point).
        tag_start: offset of the tag a ``<ref>phrase</ref>`` right before it would label.
    """

    start: int
    values: tuple[str, ...]
    form: str
    tag_start: int


class FindBoxesFn(Protocol):
    def __call__(self, text: str) -> list[FoundBox]:
        """Every box/point of the family's answer syntax in ``text`` (linear time)."""


class ValueTokensFn(Protocol):
    def __call__(self, processor: Any) -> dict[int, int]:
        """Token id -> number, for a vocabulary with one token per coordinate value; else {}."""


class SelectRowsFn(Protocol):
    def __call__(self, batch: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
        """The sub-batch of ``rows`` (pixel tensors included) for a generation batch."""


class MergeVisualsFn(Protocol):
    def __call__(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Several samples' vision tensors (in placeholder order) as one batch's."""


@dataclass(frozen=True)
class Family:
    """One VLM family's fixed surface (see the module docstring).

    Attributes:
        name: the registry key (``model.family`` in configs).
        model_type: ``model_type`` in the config.json of the family's checkpoints (how a
            checkpoint directory is recognised without a job config: export, inference).
        coords: how the family writes coordinates in text (vlm_train/data/coords.py).
        chat: the family's chat format (turn texts, tool tags, thinking markers, budget text).
        load: (model_cfg, dtype) -> (model, processor).
        make_inputs: (processor, InputsConfig) -> the batch collator.
        tiny: writes a random tiny checkpoint offline.
        box_to_text / text_to_boxes: the family's box syntax, both directions (text_to_boxes
            also reads every box of a ``grounding_answer``).
        grounding_answer: the family's whole answer to its grounding prompt, in the official
            form (e.g. the phrase tagged before the box, or a labelled JSON list); what SFT
            data built from boxes (RefCOCO, synthetic) teaches.
        find_boxes: the same syntax as raw values, for the rewards (which check order,
            range and form, and convert with ``coords``).
        grounding_prompt: the family's grounding question for a phrase.
        suppress_token_ids: ids never to sample (vision placeholders), given a processor.
        module_groups: {"vision", "projector", "llm"} -> module-name prefixes (freezing).
        lora_targets: default LoRA target modules (regexes; the language model only).
        select_rows: sub-batch of a generation batch (for the thinking budget's phase 2);
            None: every tensor is sliced along its first dimension.
        reserved_text: special tokens of the family's tokenizer that data text may not hold
            literally (the tokenizer would read them as the real ones: a forged turn, a fake
            image); validation rejects such samples.
        takes_video: whether the input builder takes video parts; validation rejects them
            otherwise.
        merge_visuals: per-sample vision tensors -> the batch's (the packed SFT collator sends
            every sample of a micro-batch through the vision tower at once).
        value_tokens: coordinate-value tokens of the processor's vocabulary (id -> value), for
            the value-aware tiny init and the value-smoothed SFT loss; None: the family has none.
    """

    name: str
    model_type: str
    coords: CoordConvention
    chat: ChatFormat
    load: LoadFn
    make_inputs: MakeInputsFn
    tiny: TinyFn
    box_to_text: BoxToTextFn
    text_to_boxes: TextToBoxesFn
    grounding_prompt: PromptFn
    grounding_answer: AnswerFn
    suppress_token_ids: TokenIdsFn
    find_boxes: FindBoxesFn
    module_groups: dict[str, list[str]]
    lora_targets: list[str] = field(default_factory=list)
    select_rows: SelectRowsFn | None = None
    reserved_text: tuple[str, ...] = ()
    takes_video: bool = False
    merge_visuals: MergeVisualsFn = concat_visuals
    value_tokens: ValueTokensFn | None = None
