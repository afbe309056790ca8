"""Configuration classes of Ovis2.5 (docs/models.md, "Ovis2.5").

``Ovis2_5_Config`` reads the official checkpoints' ``config.json`` as it is: the language model
under ``llm_config`` (a Qwen3 config) and the vision tower under ``vit_config``
(``Siglip2NavitConfig``, model_type ``siglip2_navit``). Keys of the official file that this
implementation does not use (``auto_map``, ``conversation_formatter_class``, ...) are kept as
plain attributes so a save/load round trip preserves them.
"""

from __future__ import annotations

from transformers import PreTrainedConfig, Qwen3Config

QWEN3_VOCAB_SIZE = 151936
QWEN_IMAGE_PAD_ID = 151655  # <|image_pad|> in the Qwen2/Qwen3 vocabulary


class Siglip2NavitConfig(PreTrainedConfig):
    """The SigLIP2 NaViT vision tower of Ovis2.5 (defaults are the class defaults, not the release)."""

    model_type = "siglip2_navit"
    base_config_key = "vit_config"

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    num_patches: int = -1
    image_size: int = 512
    patch_size: int = 16
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    hidden_stride: int = 2
    window_size: int = 112
    # "|"-separated layer indexes with full attention; None means every layer is full.
    fullatt_block_indexes: str | None = None
    temporal_patch_size: int = 1
    preserve_original_pe: bool = True
    use_rope: bool = True
    rope_theta: float = 10000.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"vit_config.hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if (self.image_size // self.patch_size) % self.hidden_stride:
            raise ValueError(
                f"vit_config: image_size/patch_size = {self.image_size // self.patch_size} must be a "
                f"multiple of hidden_stride {self.hidden_stride}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def patch_dim(self) -> int:
        """Values per patchified row: C * T * p * p (768 for the release)."""
        return self.num_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def full_attention_layers(self) -> list[int] | None:
        """Indexes of full-attention layers, or None when every layer attends fully."""
        if self.fullatt_block_indexes in (None, ""):
            return None
        return [int(i) for i in str(self.fullatt_block_indexes).split("|")]


class Ovis2_5_Config(PreTrainedConfig):
    """Top-level Ovis2.5 config: Qwen3 LLM + SigLIP2 NaViT + visual vocabulary."""

    model_type = "ovis2_5"
    sub_configs_defaults = {"llm_config": Qwen3Config, "vit_config": Siglip2NavitConfig}

    llm_config: dict | PreTrainedConfig | None = None
    vit_config: dict | PreTrainedConfig | None = None
    visual_vocab_size: int = 65536
    hidden_size: int | None = None
    vocab_size: int | None = None
    num_attention_heads: int | None = None
    max_position_embeddings: int | None = None
    use_cache: bool = True
    # Not in the official file. Ovis never feeds a positive image token (its atoms are negative
    # ids); this names Qwen's <|image_pad|>, vLLM's stand-in for the atoms, so trainers that
    # suppress ``config.image_token_id`` in sampling (TRL's GRPO) suppress a token Ovis never uses.
    image_token_id: int | None = None
    # The LLM sub-config decides tying (2B: tied, 9B: untied); the wrapper itself ties nothing.
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        llm = self.llm_config
        if self.hidden_size is None:
            self.hidden_size = llm.hidden_size
        elif self.hidden_size != llm.hidden_size:
            # The official code asserts the same: vte rows live in the LLM's embedding space.
            raise ValueError(
                f"config.hidden_size {self.hidden_size} != llm_config.hidden_size {llm.hidden_size}"
            )
        for key in ("vocab_size", "num_attention_heads", "max_position_embeddings"):
            if getattr(self, key) is None:
                setattr(self, key, getattr(llm, key))
        if self.image_token_id is None and llm.vocab_size == QWEN3_VOCAB_SIZE:
            self.image_token_id = QWEN_IMAGE_PAD_ID
        if self.visual_vocab_size <= 4:
            raise ValueError(f"visual_vocab_size must exceed the 4 indicator rows, got {self.visual_vocab_size}")

    def get_text_config(self, *args, **kwargs) -> PreTrainedConfig:
        """Generation and TRL read text settings (eos, vocab, cache) from the LLM config."""
        return self.llm_config


def _register() -> None:
    import importlib
    import sys

    from transformers import AutoConfig

    AutoConfig.register(Siglip2NavitConfig.model_type, Siglip2NavitConfig, exist_ok=True)
    AutoConfig.register(Ovis2_5_Config.model_type, Ovis2_5_Config, exist_ok=True)
    # A process that can read an Ovis2.5 config must also be able to build the model through
    # AutoModelForCausalLM; modeling.py registers it (skipped when modeling is importing us).
    modeling = sys.modules.get("vlm_train.models.ovis2_5.modeling")
    if modeling is None:
        importlib.import_module("vlm_train.models.ovis2_5.modeling")


_register()
