"""Ovis2.5 (AIDC-AI/Ovis2.5-2B / -9B) through this project's own implementation.

Importing this package is cheap (no torch): the model, processor and input builder load on
first use. ``FAMILY`` is the family contract of vlm_train/models/base.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_train.models.base import Family, InputsConfig
from vlm_train.models.chat import ChatFormat
from vlm_train.models.ovis2_5.constants import EMPTY_THINK
from vlm_train.models.ovis2_5.grounding import (
    COORDS,
    box_to_text,
    find_boxes,
    grounding_answer,
    grounding_prompt,
    text_to_boxes,
)
from vlm_train.models.ovis2_5.template import QWEN3_SPECIAL_TOKENS


def load(model_cfg: Any, dtype: Any = None) -> tuple[Any, Any]:
    """Load model and processor from ``model_cfg.path`` (never with trust_remote_code; jobs
    build ``path: tiny`` in the run directory first, vlm_train/launch/base_model.py).

    Args:
        model_cfg: ``vlm_train.config.ModelConfig``.
        dtype: torch dtype; None resolves ``model_cfg.dtype`` (auto: bf16 on GPU, fp32 on CPU).
    """
    from vlm_train.models.ovis2_5.modeling import Ovis2_5
    from vlm_train.models.ovis2_5.processor import Ovis2_5Processor
    from vlm_train.models.weights import load_weights

    model = load_weights(Ovis2_5, model_cfg, dtype)
    processor = Ovis2_5Processor.from_pretrained(model_cfg.path, max_pixels=model_cfg.max_pixels)
    return model, processor


def make_inputs(processor: Any, cfg: InputsConfig):
    """The batch collator (``Ovis2_5Inputs``). ``max_tiles`` is not read: Ovis2.5 sizes
    images natively (no tiles)."""
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    return Ovis2_5Inputs(
        processor,
        image_roots=cfg.image_roots,
        max_length=cfg.max_length,
        enable_thinking=cfg.enable_thinking,
        num_frames=cfg.num_frames,
        max_image_pixels=cfg.max_image_pixels,
        min_crop_size=cfg.min_crop_size,
    )


def tiny(out_dir: str | Path, seed: int = 0, **kw: Any) -> Path:
    """Random few-M-parameter Ovis2.5 checkpoint + processor, offline (see tiny.py)."""
    from vlm_train.models.ovis2_5.tiny import tiny as build

    return build(out_dir, seed=seed, **kw)


def suppress_token_ids(processor: Any) -> list[int]:
    """Qwen's vision tokens, which Ovis2.5 never uses (its placeholders are negative ids)."""
    from vlm_train.models.ovis2_5.template import UNUSED_VISION_TOKENS

    tok = processor.tokenizer
    vocab = tok.get_vocab()
    return [vocab[t] for t in UNUSED_VISION_TOKENS if t in vocab]


def select_rows(batch: dict[str, Any], rows: Any) -> dict[str, Any]:
    """Sub-batch of a generation batch (pixel rows follow their samples' grids)."""
    from vlm_train.models.ovis2_5.inputs import select_rows as select

    return select(batch, rows)


def merge_visuals(parts: Any) -> dict[str, Any]:
    """Several samples' NaViT inputs as one batch's: patch rows and grid rows concatenated in
    placeholder order (the ViT's cu_seqlens keep each frame's attention to itself)."""
    from vlm_train.models.base import concat_visuals

    out = concat_visuals(parts)
    if "grid_thws" in out:
        g = out["grid_thws"]
        rows = int((g[:, 0] * g[:, 1] * g[:, 2]).sum())
        if rows != out["pixel_values"].shape[0]:
            raise ValueError(f"grid_thws describe {rows} patch rows but pixel_values has {out['pixel_values'].shape[0]}")
    return out


FAMILY = Family(
    name="ovis2_5",
    model_type="ovis2_5",
    coords=COORDS,
    # Qwen3 ChatML; with thinking off the generation prompt carries the empty think block.
    chat=ChatFormat(empty_think=EMPTY_THINK),
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
        "vision": ["visual_tokenizer.vit"],
        # The visual head and the visual embedding table (what ``freeze.projector`` freezes).
        "projector": ["visual_tokenizer.head", "vte"],
        "llm": ["llm"],
    },
    # One regex (peft matches full module names): the LLM's projections only; the ViT's
    # self_attn.{q,k,v}_proj share those names.
    lora_targets=[r"llm\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"],
    select_rows=select_rows,
    # Qwen3's turn markers, its vision tokens (<|image_pad|> stands in for Ovis' visual atoms in
    # serving stacks) and the tool-response wrapper; <think>/<tool_call> are learned content.
    reserved_text=tuple(t for t in QWEN3_SPECIAL_TOKENS if t not in ("<think>", "</think>", "<tool_call>", "</tool_call>")),
    takes_video=True,
    merge_visuals=merge_visuals,
)
