"""A tiny random InternVL3.5-shaped checkpoint (native transformers classes), built offline.

Same architecture as the real -HF checkpoints (InternViT + pixel-shuffle projector + Qwen3),
scaled down: 64 px tiles, patch 8, so one tile is 8x8 patches -> 16 image tokens after the
0.5 pixel shuffle. Saved as an ordinary checkpoint directory (safetensors + processor), so
every code path that loads a real checkpoint loads this one too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlm_train.models.internvl.template import CHAT_TEMPLATE, SPECIAL_TOKENS, TOKENIZER_EXTRAS


def build_processor(out_dir: Path | None, image_size: int, max_tiles: int = 4, corpus: list[str] | None = None,
                    coordinate_tokens: bool = True):
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor, TokenizersBackend

    from vlm_train.testing.tokenizer import train_bpe

    # One token per 0-1000 coordinate value (InternVL's box convention) unless asked otherwise.
    extra = [str(i) for i in range(1001)] if coordinate_tokens else []
    tok = train_bpe(corpus or [], SPECIAL_TOKENS, vocab_size=1024, extra_tokens=extra)
    tokenizer = TokenizersBackend(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(TOKENIZER_EXTRAS),
        chat_template=CHAT_TEMPLATE,
    )
    # InternVL normalises with ImageNet statistics and resizes bicubically (docs/models.md, "InternVL3.5").
    image_processor = GotOcr2ImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=max_tiles,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    video_processor = InternVLVideoProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    patch = 8
    seq_len = int((image_size // patch) ** 2 * 0.25)
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_length=seq_len,
        chat_template=CHAT_TEMPLATE,
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
    """Write a random tiny InternVL checkpoint + processor to ``out_dir``; return the path."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(out, image_size, corpus=corpus)
    tok = processor.tokenizer
    vocab = len(tok)
    patch = 8
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=vision_hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=vision_hidden * 2,
            image_size=[image_size, image_size],
            patch_size=[patch, patch],
            attention_bias=True,  # as the InternViT-300M checkpoints
        ),
        text_config=dict(
            model_type="qwen3",
            vocab_size=vocab,
            hidden_size=text_hidden,
            intermediate_size=text_hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=text_hidden // 4,
            max_position_embeddings=4096,
            rope_theta=1_000_000.0,
            bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
            eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
            tie_word_embeddings=False,
        ),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=processor.image_seq_length,
        downsample_ratio=0.5,
        # transformers defaults this to True for InternVL; the real -HF checkpoints are untied.
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out
