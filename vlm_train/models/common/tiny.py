"""Steps every family's ``tiny()`` shares: the ChatML tokenizer, the small language model's
shape (the real checkpoints' language model, scaled down; each family's ``tiny.py`` names its
``model_type``), and saving the checkpoint as an ordinary directory (docs/models.md, "Tiny models
on CPU").

Each family keeps what differs (its special tokens, vision tower, processor and config class).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

EOS = "<|im_end|>"
PAD = "<|endoftext|>"
"""ChatML's turn end ends generation; the end-of-text token pads (and starts) sequences."""


def chatml_tokenizer(
    special_tokens: Sequence[str], chat_template: str, corpus: list[str] | None = None,
    extra_tokens: Sequence[str] = (), **kw: Any,
):
    """A byte-level BPE (vlm_train/testing/tokenizer.py) wrapped as a transformers tokenizer
    with ChatML's eos/pad and the family's chat template; ``kw`` go to the wrapper."""
    from transformers import TokenizersBackend

    from vlm_train.testing.tokenizer import train_bpe

    tok = train_bpe(corpus or [], list(special_tokens), vocab_size=1024, extra_tokens=list(extra_tokens))
    return TokenizersBackend(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, chat_template=chat_template, **kw)


def text_config(tokenizer: Any, hidden: int, layers: int, **extra: Any) -> dict[str, Any]:
    """The tiny language model (the real language model's shape: 4 heads, 2 KV heads, MLP
    twice as wide) sized to ``tokenizer``; ``extra`` adds or overrides fields (model_type, rope, tying)."""
    pad, eos = tokenizer.convert_tokens_to_ids(PAD), tokenizer.convert_tokens_to_ids(EOS)
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=4096,
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
    ) | extra


def save_tiny(model: Any, tokenizer: Any, out: Path, bos: bool = False) -> Path:
    """Generation stops at the turn end and pads with end-of-text (``bos``: it also starts
    sequences); the weights go to ``out`` as safetensors."""
    pad, eos = tokenizer.convert_tokens_to_ids(PAD), tokenizer.convert_tokens_to_ids(EOS)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    if bos:
        model.generation_config.bos_token_id = pad
    model.save_pretrained(out, safe_serialization=True)
    return out
