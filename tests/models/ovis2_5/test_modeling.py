"""Model: official key names/shapes, save/load with plain transformers, padding invariance."""

from __future__ import annotations

import pytest
import torch

from tests.models.ovis2_5.conftest import noise_image, real_config
from vlm_train.data.sample import Message, Sample, image, text
from vlm_train.models.ovis2_5.config import Ovis2_5_Config
from vlm_train.models.ovis2_5.modeling import Ovis2_5


def expected_keys(cfg: dict) -> dict[str, tuple[int, ...]]:
    """The official state_dict (the public safetensors index of the model card), written out independently of the model code."""
    llm, vit = cfg["llm_config"], cfg["vit_config"]
    H, F, D = llm["hidden_size"], llm["intermediate_size"], llm["head_dim"]
    q, kv, V = llm["num_attention_heads"] * D, llm["num_key_value_heads"] * D, llm["vocab_size"]
    out = {"llm.model.embed_tokens.weight": (V, H), "llm.model.norm.weight": (H,)}
    for i in range(llm["num_hidden_layers"]):
        p = f"llm.model.layers.{i}."
        out.update({
            p + "self_attn.q_proj.weight": (q, H), p + "self_attn.k_proj.weight": (kv, H),
            p + "self_attn.v_proj.weight": (kv, H), p + "self_attn.o_proj.weight": (H, q),
            p + "self_attn.q_norm.weight": (D,), p + "self_attn.k_norm.weight": (D,),
            p + "mlp.gate_proj.weight": (F, H), p + "mlp.up_proj.weight": (F, H), p + "mlp.down_proj.weight": (H, F),
            p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
        })
    if not llm["tie_word_embeddings"]:
        out["llm.lm_head.weight"] = (V, H)
    C, M, P = vit["hidden_size"], vit["intermediate_size"], vit["patch_size"]
    v = "visual_tokenizer.vit.vision_model."
    out[v + "embeddings.patch_embedding.weight"] = (C, 3, P, P)
    out[v + "embeddings.patch_embedding.bias"] = (C,)
    out[v + "embeddings.position_embedding.weight"] = ((vit["image_size"] // P) ** 2, C)
    for i in range(vit["num_hidden_layers"]):
        p = f"{v}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            out[p + n + ".weight"] = out[p + n + ".bias"] = (C,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[p + f"self_attn.{n}.weight"], out[p + f"self_attn.{n}.bias"] = (C, C), (C,)
        out[p + "mlp.fc1.weight"], out[p + "mlp.fc1.bias"] = (M, C), (M,)
        out[p + "mlp.fc2.weight"], out[p + "mlp.fc2.bias"] = (C, M), (C,)
    out[v + "post_layernorm.weight"] = out[v + "post_layernorm.bias"] = (C,)
    vv = cfg["visual_vocab_size"]
    out["visual_tokenizer.head.0.weight"] = (vv - 4, C * vit["hidden_stride"] ** 2)
    out["visual_tokenizer.head.1.weight"] = out["visual_tokenizer.head.1.bias"] = (vv - 4,)
    out["vte.weight"] = (vv, H)
    return out


@pytest.mark.parametrize(("size", "n_keys", "n_params"), [("2b", 751, 2_570_429_672), ("9b", 840, 9_174_807_784)])
def test_structure_matches_official_checkpoint(size, n_keys, n_params):
    raw = real_config(size)
    config = Ovis2_5_Config.from_dict(raw)
    with torch.device("meta"):
        model = Ovis2_5(config)
    # What save_pretrained writes: tied parameters are stored once (2B ties lm_head to the
    # embeddings, so the checkpoint has no llm.lm_head.weight).
    saved = {k: tuple(t.shape) for k, t in model.state_dict().items() if k not in model.all_tied_weights_keys}
    want = expected_keys(raw)
    assert sorted(set(saved) - set(want)) == []
    assert sorted(set(want) - set(saved)) == []
    assert saved == want
    assert len(saved) == n_keys
    # 9B: the safetensors index total_size 18,349,615,568 bytes in bf16 = 9,174,807,784 params.
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert ("llm.lm_head.weight" in saved) == (size == "9b")
    assert config.image_token_id == 151655  # Qwen's <|image_pad|>, never produced by Ovis
    if size == "2b":
        assert model.llm.lm_head.weight is model.llm.model.embed_tokens.weight


def test_hidden_size_mismatch_is_an_error():
    raw = real_config("2b")
    raw["hidden_size"] = 4096
    with pytest.raises(ValueError, match="hidden_size"):
        Ovis2_5_Config.from_dict(raw)


def _sample(n_words: int, with_image: bool) -> Sample:
    words = " ".join(["red circle"] * n_words)
    user = [image("a.png"), text(f"Describe {words}.")] if with_image else [text(f"Describe {words}.")]
    return Sample("s", [Message("user", user), Message("assistant", [text(f"A {words}.")])])


def _logits_per_row(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.logits


@pytest.mark.parametrize("for_generation", [False, True], ids=["right_pad", "left_pad"])
def test_padding_invariance(tiny_model, processor, for_generation):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    build = Ovis2_5Inputs(processor)
    samples = [_sample(1, True), _sample(6, True)]
    imgs = [[noise_image(64, 48, 1)], [noise_image(40, 64, 2)]]
    batch = build(samples, images=imgs, for_generation=for_generation)
    assert batch["attention_mask"].sum(1).tolist()[0] < batch["attention_mask"].shape[1]  # row 0 is padded
    both = _logits_per_row(tiny_model, batch)
    for i in range(2):
        alone = build([samples[i]], images=[imgs[i]], for_generation=for_generation)
        ref = _logits_per_row(tiny_model, alone)[0]
        mask = batch["attention_mask"][i].bool()
        torch.testing.assert_close(both[i][mask], ref, rtol=1e-4, atol=1e-4)


def test_mixed_text_only_and_image_rows(tiny_model, processor):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    build = Ovis2_5Inputs(processor)
    samples = [_sample(2, False), _sample(2, True)]
    imgs = [[], [noise_image(64, 64, 3)]]
    both = _logits_per_row(tiny_model, build(samples, images=imgs))
    alone = _logits_per_row(tiny_model, build([samples[1]], images=[imgs[1]]))[0]
    torch.testing.assert_close(both[1, : alone.shape[0]], alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied_2b_style"])
def test_save_and_auto_load_give_identical_logits(tmp_path, processor, tied):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    import vlm_train  # noqa: F401  (registers Ovis2.5 with the Auto classes)
    from vlm_train.models.ovis2_5 import FAMILY
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    src = FAMILY.tiny(tmp_path / "src", seed=3, tie_word_embeddings=tied)
    model = Ovis2_5.from_pretrained(src, dtype=torch.float32).eval()
    model.save_pretrained(tmp_path / "copy")
    with safe_open(str(tmp_path / "copy" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert ("llm.lm_head.weight" in keys) == (not tied)
    assert "vte.weight" in keys and "visual_tokenizer.head.0.weight" in keys

    assert type(AutoConfig.from_pretrained(tmp_path / "copy")) is Ovis2_5_Config
    loaded, info = AutoModelForCausalLM.from_pretrained(
        tmp_path / "copy", trust_remote_code=False, dtype=torch.float32, output_loading_info=True
    )
    loaded.eval()
    assert type(loaded) is Ovis2_5
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    if tied:
        assert loaded.llm.lm_head.weight is loaded.llm.model.embed_tokens.weight
    batch = Ovis2_5Inputs(processor)([_sample(3, True)], images=[[noise_image(64, 64, 5)]])
    with torch.no_grad():
        a, b = model(**batch).logits, loaded(**batch).logits
    assert torch.equal(a, b)


def test_official_config_with_auto_map_loads_without_remote_code(tmp_path):
    import json

    from transformers import AutoConfig

    import vlm_train  # noqa: F401

    (tmp_path / "config.json").write_text(json.dumps(real_config("9b")))
    cfg = AutoConfig.from_pretrained(tmp_path, trust_remote_code=False)
    assert type(cfg) is Ovis2_5_Config
    assert cfg.llm_config.num_hidden_layers == 36 and cfg.vit_config.num_hidden_layers == 27
    assert cfg.conversation_formatter_class == "Qwen3ConversationFormatter"


def test_text_only_training_keeps_visual_modules_in_graph(tiny_dir, processor):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    model = Ovis2_5.from_pretrained(tiny_dir, dtype=torch.float32).train()
    batch = Ovis2_5Inputs(processor)([_sample(2, False)], images=[[]])
    assert "pixel_values" not in batch
    model(**batch).loss.backward()
    vit_grad = model.visual_tokenizer.vit.vision_model.encoder.layers[0].mlp.fc1.weight.grad
    assert vit_grad is not None and torch.count_nonzero(vit_grad) == 0
    assert model.vte.weight.grad is not None and model.visual_tokenizer.head[0].weight.grad is not None
    assert model.llm.model.embed_tokens.weight.grad.abs().sum() > 0


def test_atom_count_mismatch_is_an_error(tiny_model, processor):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    batch = Ovis2_5Inputs(processor)([_sample(1, True)], images=[[noise_image(64, 64)]])
    batch["grid_thws"] = torch.tensor([[1, 4, 4]])
    batch["pixel_values"] = batch["pixel_values"][:16]
    with pytest.raises(ValueError, match="visual atom placeholders"):
        tiny_model(**batch)


def test_labels_on_placeholders_are_ignored(tiny_model, processor):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    batch = Ovis2_5Inputs(processor)([_sample(1, True)], images=[[noise_image(64, 64)]])
    with torch.no_grad():
        ref = tiny_model(**batch).loss
        bad = dict(batch, labels=torch.where(batch["input_ids"] < 0, 5, batch["labels"]))
        assert torch.equal(tiny_model(**bad).loss, ref)


def test_generate_returns_prompt_then_new_tokens(tiny_model, processor):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    build = Ovis2_5Inputs(processor)
    batch = build([_sample(1, True), _sample(4, True)], images=[[noise_image(64, 64)], [noise_image(48, 64)]], for_generation=True)
    out = tiny_model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])
    assert out.shape[1] <= batch["input_ids"].shape[1] + 4
    # Greedy generation of a batch equals each prompt alone (left padding is invisible).
    alone = build([_sample(4, True)], images=[[noise_image(48, 64)]], for_generation=True)
    out1 = tiny_model.generate(**alone, max_new_tokens=4, do_sample=False)
    new_b = out[1, batch["input_ids"].shape[1] :]
    new_1 = out1[0, alone["input_ids"].shape[1] :]
    assert torch.equal(new_b[: len(new_1)], new_1)


def test_gradient_checkpointing_gives_same_gradients(tiny_dir, processor):
    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    batch = Ovis2_5Inputs(processor)([_sample(2, True)], images=[[noise_image(64, 64)]])
    grads = []
    for gc in (False, True):
        model = Ovis2_5.from_pretrained(tiny_dir, dtype=torch.float32).train()
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.visual_tokenizer.vit.vision_model.encoder.layers[0].gradient_checkpointing
        model(**batch).loss.backward()
        grads.append(model.visual_tokenizer.vit.vision_model.encoder.layers[0].self_attn.q_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_trl_fused_loss_matches_forward_loss(tiny_dir, processor):
    from trl.trainer.utils import add_fused_lm_head

    from vlm_train.models.ovis2_5.inputs import Ovis2_5Inputs

    model = Ovis2_5.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    batch = Ovis2_5Inputs(processor)(
        [_sample(1, True), _sample(4, True)], images=[[noise_image(64, 64)], [noise_image(48, 64)]]
    )
    with torch.no_grad():
        ref = model(**batch).loss
        hidden = model.base_model(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
        assert hidden.shape == (*batch["input_ids"].shape, model.config.hidden_size)
        add_fused_lm_head(model, outputs=("log_probs",))
        fused = model(**batch, fused_lm_head=True).loss
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
