"""A tiny random Qwen3-VL checkpoint (native transformers classes), built offline.

Same architecture as the real checkpoints (ViT with 2D RoPE + DeepStack merger + Qwen3 with
M-RoPE), scaled down: patch 8 with the 2x2 merge, so each visual token covers 16x16 pixels, and images
are resized to at most ``image_size`` squared pixels (64: a 64x64 image is 16 visual tokens). Saved as an ordinary checkpoint directory
(safetensors + processor), so every code path that loads a real checkpoint loads this one too.

The tiny tokenizers' pre-tokenizer regex (``vlm_train.testing.tokenizer.SPLIT_PATTERN``) is the
Qwen2 tokenizer's, which the Qwen3 tokenizer of every family's language model keeps.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlm_train.models.common.tiny import chatml_tokenizer, save_tiny, text_config
from vlm_train.models.common.value_tokens import init_value_rows
from vlm_train.models.qwen3_vl.grounding import value_tokens
from vlm_train.models.qwen3_vl.template import CHAT_TEMPLATE, SPECIAL_TOKENS

PATCH = 8
MERGE = 2


def build_processor(out_dir: Path | None, image_size: int = 64, corpus: list[str] | None = None,
                    coordinate_tokens: bool = True):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    # One token per 0-1000 coordinate value (Qwen3-VL's box convention) unless asked otherwise.
    extra = [str(i) for i in range(1001)] if coordinate_tokens else []
    tokenizer = chatml_tokenizer(SPECIAL_TOKENS, CHAT_TEMPLATE, corpus, extra)
    unit = PATCH * MERGE
    # Qwen3-VL normalises with mean = std = 0.5 and resizes so each side is a multiple of
    # patch x merge, the pixel count kept in [shortest_edge, longest_edge].
    kw = dict(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": unit * unit, "longest_edge": image_size * image_size}, **kw)
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": unit * unit, "longest_edge": image_size * image_size * 2}, **kw)
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=CHAT_TEMPLATE
    )
    if out_dir is not None:
        processor.save_pretrained(out_dir)
    return processor


def tiny(
    out_dir: str | Path,
    seed: int = 0,
    image_size: int = 64,
    vision_hidden: int = 64,
    text_hidden: int = 96,
    layers: int = 2,
    corpus: list[str] | None = None,
) -> Path:
    """Write a random tiny Qwen3-VL checkpoint + processor to ``out_dir``; return the path."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(out, image_size, corpus=corpus)
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    config = Qwen3VLConfig(
        vision_config=dict(
            depth=layers,
            hidden_size=vision_hidden,
            intermediate_size=vision_hidden * 2,
            num_heads=4,
            patch_size=PATCH,
            spatial_merge_size=MERGE,
            temporal_patch_size=2,
            out_hidden_size=text_hidden,
            # The learned position table (a square grid) is interpolated to each image's grid.
            num_position_embeddings=(image_size // PATCH) ** 2,
            deepstack_visual_indexes=[0],
        ),
        text_config=text_config(
            tok, text_hidden, layers,
            # M-RoPE: the rotary half-dims split over (t, h, w), as the real 24/20/20 of 64.
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [4, 2, 2],
                             "mrope_interleaved": True},
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    # Value tokens start from sinusoidal features of their value (412 next to 413), as the
    # other families' tiny models, so minutes of CPU training can learn boxes.
    init_value_rows(model, value_tokens(processor))
    return save_tiny(model, tok, out)
