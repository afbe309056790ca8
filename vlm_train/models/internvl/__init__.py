"""InternVL3.5 through transformers' native InternVLForConditionalGeneration (-HF checkpoints).

Facts about this family that family-neutral modules rely on without naming it:

- ``sft.loss_weighting: square`` (vlm_train/train/loss_weights.py) is the official fine-tuning
  code's ``loss_reduction: square``.
- ``save_pretrained`` writes this class's ``model.language_model.layers...`` back as the
  release's ``language_model.model.layers...``, which is why resumed weights go through
  ``from_pretrained`` (vlm_train/train/resume.py).
- Dynamic tiling (``model.max_tiles``, ``model.tiny.max_tiles``) is this family's; the
  ``conversations_meta`` format is the layout of its fine-tuning meta files, and the RefCOCO
  protocol is its evaluation script (docs/models.md).
"""

from __future__ import annotations

from typing import Any

from vlm_train.models.base import Family, InputsConfig
from vlm_train.models.chat import ChatFormat
from vlm_train.models.internvl.grounding import (
    COORDS,
    box_to_text,
    find_boxes,
    grounding_answer,
    grounding_prompt,
    text_to_boxes,
    value_tokens,
)
from vlm_train.models.internvl.inputs import InternVLInputs
from vlm_train.models.internvl.template import TOKENIZER_EXTRAS
from vlm_train.models.internvl.tiny import tiny

# Qwen-style ChatML with the Qwen3 tool tags; no empty think block in prompts.
CHAT = ChatFormat()


def load(model_cfg: Any, dtype: Any = None) -> tuple[Any, Any]:
    """Load model and processor from ``model_cfg.path`` (never with trust_remote_code)."""
    from transformers import AutoProcessor, AutoTokenizer, InternVLForConditionalGeneration

    from vlm_train.models.weights import load_weights

    path = model_cfg.path
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except AttributeError:
        # Some InternVL3.5 -HF tokenizers lack the image-token attributes the processor reads.
        tok = AutoTokenizer.from_pretrained(path, extra_special_tokens=dict(TOKENIZER_EXTRAS))
        processor = AutoProcessor.from_pretrained(path, tokenizer=tok, trust_remote_code=False)
    return load_weights(InternVLForConditionalGeneration, model_cfg, dtype), processor


def make_inputs(processor: Any, cfg: InputsConfig) -> InternVLInputs:
    """The batch collator. InternVL3.5's template has no thinking switch (``enable_thinking``
    is not read); a video part becomes ``num_frames`` single-tile frames (InternVL's video chat)."""
    return InternVLInputs(
        processor,
        CHAT,
        image_roots=cfg.image_roots,
        max_length=cfg.max_length,
        max_image_pixels=cfg.max_image_pixels,
        min_crop_size=cfg.min_crop_size,
        max_tiles=cfg.max_tiles,
        **({"num_frames": cfg.num_frames} if cfg.num_frames is not None else {}),
    )


def suppress_token_ids(processor: Any) -> list[int]:
    tok = processor.tokenizer
    return [tok.convert_tokens_to_ids(t) for t in ("<img>", "</img>", "<IMG_CONTEXT>", "<video>")]


FAMILY = Family(
    name="internvl",
    model_type="internvl",
    coords=COORDS,
    chat=CHAT,
    load=load,
    make_inputs=make_inputs,
    tiny=tiny,
    box_to_text=box_to_text,
    text_to_boxes=text_to_boxes,
    grounding_prompt=grounding_prompt,
    grounding_answer=grounding_answer,
    suppress_token_ids=suppress_token_ids,
    find_boxes=find_boxes,
    module_groups={
        "vision": ["model.vision_tower"],
        "projector": ["model.multi_modal_projector"],
        "llm": ["model.language_model", "lm_head"],
    },
    # Regex (peft matches the full module name): the language model's projections only, so the
    # vision tower's q/k/v of the same names are not adapted unless asked.
    # Coordinate-value tokens (id -> value) for the value-smoothed SFT loss (loss.coordinate_sigma).
    value_tokens=value_tokens,
    lora_targets=[r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"],
    # Turn markers and vision placeholders; <ref>/<box>/<think>/<tool_call> are learned content.
    reserved_text=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>",
                   "<tool_response>", "</tool_response>"),
    takes_video=False,  # the input builder refuses video parts
)
