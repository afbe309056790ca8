"""A tiny random InternVL3.5-shaped checkpoint (native transformers classes), built offline.

Same architecture as the real -HF checkpoints (InternViT + pixel-shuffle projector + Qwen3),
scaled down: 64 px tiles, patch 8, so one tile is 8x8 patches -> 16 image tokens after the
0.5 pixel shuffle. Saved as an ordinary checkpoint directory (safetensors + processor), so
every code path that loads a real checkpoint loads this one too.

Two parts of the random init are not random, so a model trained from scratch for minutes on
a CPU can learn where things are (measured: with plain random init the boxes of a 2-core SFT
run barely depend on the image after 8 minutes):

- transformers initialises InternViT's absolute position embeddings to zeros, which leaves the
  patches of a random tower without any position; they get the fixed 2-D sin-cos embedding of
  ViT/MAE (He et al. 2021, https://arxiv.org/abs/2111.06377), as a trained tower would have;
- each coordinate-value token ("0".."1000") gets embedding and lm_head rows from sinusoidal
  features of its value (``vlm_train.models.common.value_tokens``), so 412 starts next to 413.

With ``vision_pretrain_steps`` the vision tower and projector are then pretrained on synthetic
shapes (``vlm_train.models.common.vision_pretrain``), as a real one is before VLM training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlm_train.models.common.tiny import chatml_tokenizer, save_tiny, text_config
from vlm_train.models.common.value_tokens import init_value_rows
from vlm_train.models.common.vision_pretrain import pretrain_vision
from vlm_train.models.internvl.grounding import value_tokens
from vlm_train.models.internvl.template import CHAT_TEMPLATE, SPECIAL_TOKENS, TOKENIZER_EXTRAS

TOOL_CALL_WORDS = ('"bbox_2d"', '"name"', '"crop"', '"arguments"', '"label"')


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid * grid, dim) fixed 2-D sin-cos position embedding, rows in raster order.

    Half the channels encode the column, half the row, each as sin/cos at geometric frequencies.
    """
    q = max(1, dim // 4)
    omega = 1.0 / (100.0 ** (torch.arange(q, dtype=torch.float) / q))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float), torch.arange(grid, dtype=torch.float), indexing="ij")

    def enc(p: torch.Tensor) -> torch.Tensor:
        a = p.flatten()[:, None] * omega[None]
        return torch.cat([a.sin(), a.cos()], dim=1)

    out = torch.zeros(grid * grid, dim)
    f = torch.cat([enc(xs), enc(ys)], dim=1)[:, :dim]
    out[:, : f.shape[1]] = f
    return out


@torch.no_grad()
def init_positions(model) -> None:
    """Write the 2-D sin-cos embedding into the vision tower's (zero-initialised) patch positions."""
    pe = model.model.vision_tower.embeddings.position_embeddings
    grid = round((pe.shape[1] - 1) ** 0.5)  # the first row is the CLS token's
    pe[0, 1:] = sincos_2d(grid, pe.shape[-1]).to(pe.dtype)


def build_processor(out_dir: Path | None, image_size: int, max_tiles: int = 4, corpus: list[str] | None = None,
                    coordinate_tokens: bool = True):
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    # One token per 0-1000 coordinate value (InternVL's box convention) unless asked otherwise.
    # The crop call's JSON keys are whole tokens too: added tokens match anywhere, so without
    # them the "2" of "bbox_2d" would be read as the coordinate value 2 (and trained as one).
    extra = [str(i) for i in range(1001)] + list(TOOL_CALL_WORDS) if coordinate_tokens else []
    tokenizer = chatml_tokenizer(SPECIAL_TOKENS, CHAT_TEMPLATE, corpus, extra, extra_special_tokens=dict(TOKENIZER_EXTRAS))
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
    max_tiles: int = 4,
    vision_pretrain_steps: int = 0,
    vision_pretrain_patterns: bool = False,
) -> Path:
    """Write a random tiny InternVL checkpoint + processor to ``out_dir``; return the path."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(out, image_size, max_tiles=max_tiles, corpus=corpus)
    tok = processor.tokenizer
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
        text_config=text_config(tok, text_hidden, layers, model_type="qwen3", rope_theta=1_000_000.0,
                                tie_word_embeddings=False),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=processor.image_seq_length,
        downsample_ratio=0.5,
        # transformers defaults this to True for InternVL; the real -HF checkpoints are untied.
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    init_positions(model)
    init_value_rows(model, value_tokens(processor))
    if vision_pretrain_steps > 0:
        pretrain(model, processor, image_size // patch // 2, vision_pretrain_steps, seed, out, vision_pretrain_patterns)
    return save_tiny(model, tok, out)


def pretrain(model, processor, grid: int, steps: int, seed: int, out: Path, patterns: bool = False) -> None:
    """Pretrain the tower + projector on the image tokens the language model receives (one
    tile per image, tokens in raster order after the pixel shuffle)."""
    m = model.model
    image_processor = processor.image_processor

    def pixels(images):
        return image_processor(images, crop_to_patches=False, return_tensors="pt")["pixel_values"]

    def image_tokens(pv):
        return m.get_image_features(pixel_values=pv, vision_feature_layer=-1,
                                    vision_feature_select_strategy="default").pooler_output

    params = [*m.vision_tower.parameters(), *m.multi_modal_projector.parameters()]
    report = pretrain_vision(pixels, image_tokens, params, (grid, grid), model.config.text_config.hidden_size,
                             steps, seed=seed, canvas=2 * image_processor.size["height"], patterns=patterns)
    (out / "vision_pretrain.txt").write_text(report.line() + "\n")
