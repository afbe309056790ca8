"""A tiny random Ovis2.5 checkpoint built offline (same architecture, scaled down).

64 px images with patch 8 and the 2x2 merge give 16 visual tokens per image; the visual
vocabulary has 256 entries. Saved as an ordinary checkpoint directory (safetensors, tokenizer,
processor JSON), so every code path that loads a real checkpoint loads this one too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlm_train.models.common.tiny import chatml_tokenizer, save_tiny, text_config
from vlm_train.models.ovis2_5.template import CHAT_TEMPLATE, QWEN3_SPECIAL_TOKENS


def build_tokenizer(corpus: list[str] | None = None, coordinate_tokens: bool = True):
    """Byte-level BPE with Qwen3's special tokens (<think>, <tool_call>, ...) and chat template.

    With ``coordinate_tokens`` every Ovis coordinate value "0.000".."0.999" is one token: the
    text format stays the official one, but a tiny model learns boxes far faster (docs/models.md, "Tiny models on CPU").
    """
    extra = [f"0.{i:03d}" for i in range(1000)] if coordinate_tokens else []
    return chatml_tokenizer(QWEN3_SPECIAL_TOKENS, CHAT_TEMPLATE, corpus, extra)


def tiny(
    out_dir: str | Path,
    seed: int = 0,
    image_size: int = 64,
    vision_hidden: int = 64,
    text_hidden: int = 96,
    layers: int = 2,
    corpus: list[str] | None = None,
    patch_size: int = 8,
    visual_vocab_size: int = 256,
    tie_word_embeddings: bool = False,
    coordinate_tokens: bool = True,
) -> Path:
    """Write a random tiny Ovis2.5 checkpoint + processor to ``out_dir``; return the path.

    Args:
        image_size: side of the learned position table (in pixels) and the processor's max
            image side; smaller images are resized up to at least half of it.
        tie_word_embeddings: tie the LLM's lm_head to its embeddings (as the real 2B does).
        coordinate_tokens: one token per coordinate value (see ``build_tokenizer``).
    """
    from vlm_train.models.ovis2_5.config import Ovis2_5_Config
    from vlm_train.models.ovis2_5.modeling import Ovis2_5
    from vlm_train.models.ovis2_5.processor import Ovis2_5Processor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus, coordinate_tokens)
    factor = patch_size * 2
    processor = Ovis2_5Processor(
        tokenizer=tokenizer,
        patch_size=patch_size,
        hidden_stride=2,
        min_pixels=(image_size // 2) ** 2,
        max_pixels=image_size**2,
        video_max_pixels=image_size**2,
        num_frames=4,
        max_length=2048,
    )
    if image_size % factor:
        raise ValueError(f"tiny: image_size {image_size} must be a multiple of {factor}")
    config = Ovis2_5_Config(
        llm_config=text_config(tokenizer, text_hidden, layers, model_type="qwen3", rope_theta=1_000_000.0,
                               rms_norm_eps=1e-6, tie_word_embeddings=tie_word_embeddings),
        vit_config=dict(
            hidden_size=vision_hidden,
            intermediate_size=vision_hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=patch_size,
            hidden_stride=2,
        ),
        visual_vocab_size=visual_vocab_size,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        conversation_formatter_class="Qwen3ConversationFormatter",
        architectures=["Ovis2_5"],
    )
    torch.manual_seed(seed)
    model = Ovis2_5(config)
    save_tiny(model, tokenizer, out, bos=True)
    processor.save_pretrained(out)
    return out
