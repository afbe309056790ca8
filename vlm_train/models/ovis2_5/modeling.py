"""Ovis2.5 model: visual tokenizer -> probabilistic visual tokens -> vte -> Qwen3 (docs/models.md, "Ovis2.5").

A ``PreTrainedModel`` registered with ``AutoModelForCausalLM`` (see ``hf_register``), so the
official checkpoints load with plain ``from_pretrained`` and no remote code. Parameter names
are the official ones: ``llm.*``, ``visual_tokenizer.vit.vision_model.*``,
``visual_tokenizer.head.{0,1}.*`` and ``vte.weight``.

Shape legend: B = batch, L = sequence, E = LLM hidden, N = packed patches, A = visual atoms,
V = visual vocabulary.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel, Qwen3ForCausalLM
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from vlm_train.models.base import IGNORE
from vlm_train.models.ovis2_5.config import Ovis2_5_Config
from vlm_train.models.ovis2_5.constants import (
    IMAGE_START_ID,
    NUM_INDICATORS,
    VIDEO_END_ID,
    VISUAL_ATOM_ID,
)
from vlm_train.models.ovis2_5.vision import Siglip2NavitModel


class VisualTokenizer(nn.Module):
    """ViT + head: each 2x2 patch block becomes a probability over the visual vocabulary."""

    def __init__(self, config: Ovis2_5_Config):
        super().__init__()
        vit = config.vit_config
        self.vit = Siglip2NavitModel(vit)
        self.merge = vit.hidden_stride**2
        head_in = vit.hidden_size * self.merge
        head_out = config.visual_vocab_size - NUM_INDICATORS
        self.head = nn.Sequential(nn.Linear(head_in, head_out, bias=False), nn.LayerNorm(head_out))

    def forward(self, pixel_values_NP: torch.Tensor, grid_thws: torch.Tensor) -> torch.Tensor:
        """[N, P] patches -> [N / 4, V] visual-token probabilities (4 zero indicator columns)."""
        feats = self.vit(pixel_values_NP, grid_thws)
        # Patches are in merge order, so each run of 4 rows is one 2x2 block.
        feats_AK = feats.reshape(-1, feats.shape[-1] * self.merge)
        logits = self.head(feats_AK)
        probs = F.softmax(logits.float(), dim=-1).to(logits.dtype)
        return F.pad(probs, (0, NUM_INDICATORS))


class VisualEmbedding(nn.Embedding):
    """``vte``: integer ids do a lookup, probability rows take the expectation over the table."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.int32, torch.int64):
            return F.embedding(x, self.weight)
        return x.to(self.weight.dtype) @ self.weight


class Ovis2_5Backbone:
    """Callable backbone of an ``Ovis2_5`` (merge + Qwen3 decoder, no LM head).

    Not an ``nn.Module``: it owns no parameters and is not registered as a submodule, so the
    checkpoint keys stay the official ones. It only exists for callers that split backbone
    and head (TRL's fused log-prob loss).
    """

    _tp_plan = None
    _pp_plan = None

    def __init__(self, model: Ovis2_5):
        self.model = model

    def __call__(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_thws: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ):
        embeds, position_ids = self.model._prepare(
            input_ids, attention_mask, pixel_values, grid_thws, inputs_embeds, position_ids
        )
        return self.model.llm.model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )


class Ovis2_5PreTrainedModel(PreTrainedModel):
    config_class = Ovis2_5_Config
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # Units DeepSpeed/accelerate must keep whole: one decoder block, one ViT block.
    _no_split_modules = ["Qwen3DecoderLayer", "Siglip2NavitEncoderLayer"]
    _skip_keys_device_placement = "past_key_values"
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True


class Ovis2_5(Ovis2_5PreTrainedModel, GenerationMixin):
    """Ovis2.5 for causal LM training and generation."""

    def __init__(self, config: Ovis2_5_Config):
        super().__init__(config)
        self.llm = Qwen3ForCausalLM(config.llm_config)
        self.visual_tokenizer = VisualTokenizer(config)
        self.vte = VisualEmbedding(config.visual_vocab_size, config.hidden_size)
        self.post_init()

    # ---- embeddings ---------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.llm.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.llm.set_output_embeddings(value)

    def visual_embeddings(self, pixel_values: torch.Tensor, grid_thws: torch.Tensor) -> torch.Tensor:
        """[N, P] patches -> [A, E] atom embeddings (A = N / 4)."""
        probs = self.visual_tokenizer(pixel_values, grid_thws.to(torch.long))
        return self.vte(probs)

    def _dummy_visual(self, device: torch.device) -> torch.Tensor:
        vit = self.config.vit_config
        s = vit.hidden_stride
        pixels = torch.zeros(s * s, vit.patch_dim, device=device)
        grid = torch.tensor([[1, s, s]], device=device)
        return self.visual_embeddings(pixels, grid)

    def merge_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        grid_thws: torch.Tensor | None,
    ) -> torch.Tensor:
        """Word embeddings with atoms and indicators written over the negative placeholders.

        Atom embeddings fill the ``VISUAL_ATOM_ID`` positions in flattened row-major order
        across the batch, which is the order the collator concatenates pixel rows in.
        """
        embed = self.llm.get_input_embeddings()
        embeds_BLE = embed(input_ids.clamp(min=0))
        atom_mask = input_ids == VISUAL_ATOM_ID
        if pixel_values is not None:
            if grid_thws is None:
                raise ValueError("pixel_values given without grid_thws")
            atoms_AE = self.visual_embeddings(pixel_values, grid_thws)
            n_atoms = int(atom_mask.sum())
            if n_atoms != atoms_AE.shape[0]:
                raise ValueError(
                    f"{n_atoms} visual atom placeholders in input_ids but {atoms_AE.shape[0]} visual tokens "
                    f"from grid_thws {grid_thws.tolist()}"
                )
            embeds_BLE = embeds_BLE.masked_scatter(atom_mask.unsqueeze(-1), atoms_AE.to(embeds_BLE.dtype))
        elif atom_mask.any():
            raise ValueError("input_ids hold visual atom placeholders but pixel_values is None")
        elif self.training or is_deepspeed_zero3_enabled():
            # Keep ViT, head and vte in the graph on text-only batches: ZeRO-3 ranks must run
            # the same gathers, and every trainable parameter must see a (zero) gradient.
            embeds_BLE = embeds_BLE + self._dummy_visual(embeds_BLE.device).sum() * 0.0

        indicator_mask = (input_ids <= IMAGE_START_ID) & (input_ids >= VIDEO_END_ID)
        if indicator_mask.any():
            first = self.config.visual_vocab_size - NUM_INDICATORS
            rows = self.vte(torch.arange(first, first + NUM_INDICATORS, device=input_ids.device))
            which = (IMAGE_START_ID - input_ids).clamp(0, NUM_INDICATORS - 1)
            embeds_BLE = torch.where(indicator_mask.unsqueeze(-1), rows[which].to(embeds_BLE.dtype), embeds_BLE)
        return embeds_BLE

    # ---- forward / generate -------------------------------------------------------------
    def _prepare(self, input_ids, attention_mask, pixel_values, grid_thws, inputs_embeds, position_ids):
        """Merged embeddings and, when not given, positions counting real tokens only (so a
        left-padded row sees the positions of the unpadded one, as in generate)."""
        if inputs_embeds is None:
            inputs_embeds = self.merge_inputs(input_ids, pixel_values, grid_thws)
        if position_ids is None and attention_mask is not None and attention_mask.shape[1] == inputs_embeds.shape[1]:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return inputs_embeds, position_ids

    @property
    def base_model(self) -> Ovis2_5Backbone:
        """The backbone view: same inputs as ``forward``, returns the LLM's last hidden states.

        TRL's fused loss (SFT and GRPO) calls ``model.base_model(**batch).last_hidden_state``
        and applies ``get_output_embeddings()`` itself.
        """
        return Ovis2_5Backbone(self)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_thws: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ):
        """Run the LLM on merged embeddings; loss is shifted cross-entropy ignoring -100.

        Args:
            input_ids: [B, L] token ids with negative visual placeholders.
            attention_mask: [B, L], 1 for real tokens (left or right padding).
            pixel_values: [sum t*h*w, patch_dim] patchified pixels of all visuals in atom order.
            grid_thws: [n_visual, 3] (t, h, w) in patches.
            labels: [B, L] with -100 where not learned.
            **kwargs: passed to Qwen3ForCausalLM (cache, logits_to_keep, num_items_in_batch, ...).
        """
        inputs_embeds, position_ids = self._prepare(
            input_ids, attention_mask, pixel_values, grid_thws, inputs_embeds, position_ids
        )
        if labels is not None and input_ids is not None:
            labels = labels.masked_fill(input_ids < 0, IGNORE)
        return self.llm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        grid_thws: torch.Tensor | None = None,
        **kwargs,
    ):
        """Generate from (left-padded) prompts with visual inputs.

        Unlike the official code, which returns only the new tokens, this returns the prompt
        ids followed by the new tokens, like every transformers decoder-only model, so TRL and
        other callers can slice the completion at ``input_ids.shape[1]``.
        """
        if input_ids is None:
            raise ValueError("Ovis2_5.generate needs input_ids")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.merge_inputs(input_ids, pixel_values, grid_thws)
        # The checkpoint's generation config (eos, pad) is the wrapper's; the inner LLM's default
        # one would not know them. Keyword settings override it, as in transformers.
        gen_config = copy.deepcopy(kwargs.pop("generation_config", None) or self.generation_config)
        rest = gen_config.update(**kwargs)
        out = self.llm.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, generation_config=gen_config, **rest
        )
        if isinstance(out, torch.Tensor):
            return torch.cat([input_ids, out.to(input_ids.device)], dim=1)
        out.sequences = torch.cat([input_ids, out.sequences.to(input_ids.device)], dim=1)
        return out


def _register() -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.register(Ovis2_5_Config, Ovis2_5, exist_ok=True)


_register()
