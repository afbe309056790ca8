"""Qwen3-VL through transformers' native Qwen3VLForConditionalGeneration and its processor."""

from __future__ import annotations

from typing import Any

from vlm_train.models.base import Family, InputsConfig
from vlm_train.models.chat import ChatFormat
from vlm_train.models.qwen3_vl.grounding import (
    COORDS,
    box_to_text,
    find_boxes,
    grounding_answer,
    grounding_prompt,
    text_to_boxes,
    value_tokens,
)
from vlm_train.models.qwen3_vl.inputs import Qwen3VLInputs
from vlm_train.models.qwen3_vl.tiny import tiny

# Qwen3's ChatML with its tool tags. The Instruct checkpoints write no think block; the
# Thinking ones open the assistant turn with "<think>\n" in their template (docs/models.md).
CHAT = ChatFormat()


def load(model_cfg: Any, dtype: Any = None) -> tuple[Any, Any]:
    """Load model and processor from ``model_cfg.path`` (never remote code, safetensors only)."""
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    from vlm_train.models.qwen3_vl.modeling import derive_token_types
    from vlm_train.models.weights import load_weights

    processor = AutoProcessor.from_pretrained(model_cfg.path, trust_remote_code=False)
    return derive_token_types(load_weights(Qwen3VLForConditionalGeneration, model_cfg, dtype)), processor


def make_inputs(processor: Any, cfg: InputsConfig) -> Qwen3VLInputs:
    """The batch collator. Images only here (``num_frames``/``max_tiles`` are not read: video
    parts arrive as frames, and Qwen3-VL resizes instead of tiling)."""
    return Qwen3VLInputs(
        processor, CHAT, image_roots=cfg.image_roots, max_length=cfg.max_length,
        max_image_pixels=cfg.max_image_pixels, min_crop_size=cfg.min_crop_size, enable_thinking=cfg.enable_thinking,
    )


def suppress_token_ids(processor: Any) -> list[int]:
    tok = processor.tokenizer
    return [tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")]


FAMILY = Family(
    name="qwen3_vl",
    model_type="qwen3_vl",  # config.json of the Qwen3-VL checkpoints
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
        "vision": ["model.visual.blocks", "model.visual.patch_embed", "model.visual.pos_embed"],
        "projector": ["model.visual.merger", "model.visual.deepstack_merger_list"],
        "llm": ["model.language_model", "lm_head"],
    },
    # Regex (peft matches the full module name): the language model's projections only; the
    # vision blocks' attention is a fused ``qkv`` and their MLP has linear_fc1/2, never matched.
    lora_targets=[r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"],
    # Coordinate-value tokens (id -> value) for the value-smoothed SFT loss (loss.coordinate_sigma).
    value_tokens=value_tokens,
    # Turn markers and vision tokens; <think>/<tool_call> are learned content.
    reserved_text=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_response>", "</tool_response>"),
    takes_video=False,  # the input builder refuses video parts (the data layer expands videos to frames)
)
