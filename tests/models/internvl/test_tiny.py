"""The tiny InternVL's non-random init: vision patches know their position, coordinate tokens their value."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AutoProcessor, InternVLForConditionalGeneration

from vlm_train.models import get_family


def test_tiny_init_positions_and_value_tokens(tiny_internvl):
    model = InternVLForConditionalGeneration.from_pretrained(tiny_internvl)
    proc = AutoProcessor.from_pretrained(tiny_internvl)
    pe = model.model.vision_tower.embeddings.position_embeddings[0, 1:]
    # transformers zero-initialises these; every patch now has its own position
    assert pe.abs().sum() > 0 and torch.unique(pe, dim=0).shape[0] == pe.shape[0]
    grid = round(pe.shape[0] ** 0.5)
    near, far = F.cosine_similarity(pe[0], pe[1], dim=0), F.cosine_similarity(pe[0], pe[grid * grid - 1], dim=0)
    assert near > far
    values = get_family("internvl").value_tokens(proc)
    assert len(values) == 1001 and sorted(values.values()) == list(range(1001))
    ids = {v: i for i, v in values.items()}
    for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        def sim(a: int, b: int, w=w) -> float:
            return F.cosine_similarity(w[ids[a]], w[ids[b]], dim=0).item()

        assert sim(412, 413) > 0.9 and sim(412, 413) > sim(412, 450) > sim(412, 7)


def test_vision_pretraining_trains_only_the_tower_and_projector(tmp_path):
    """``vision_pretrain_steps``: the saved tower and projector are trained, the language model is
    the same random one, and the build records the held-out figures of the dense task."""
    from safetensors.torch import load_file

    from vlm_train.models.internvl.tiny import tiny

    kw = dict(seed=0, image_size=32, vision_hidden=32, text_hidden=32, layers=1, max_tiles=1)
    plain = load_file(tiny(tmp_path / "a", **kw) / "model.safetensors")
    pre_dir = tiny(tmp_path / "b", vision_pretrain_steps=20, **kw)
    pre = load_file(pre_dir / "model.safetensors")
    changed = {k for k in plain if not torch.equal(plain[k], pre[k])}
    assert changed and all("vision_tower" in k or "multi_modal_projector" in k for k in changed), sorted(changed)[:5]
    assert any("vision_tower" in k for k in changed) and any("multi_modal_projector" in k for k in changed)
    assert (pre_dir / "vision_pretrain.txt").read_text().startswith("vision pretraining: 20 steps")


def test_vision_pretraining_learns_the_dense_task(tiny_internvl):
    from vlm_train.models.common.vision_pretrain import pretrain_vision

    model = InternVLForConditionalGeneration.from_pretrained(tiny_internvl)
    proc = AutoProcessor.from_pretrained(tiny_internvl)
    m = model.model

    def run(steps: int):
        torch.manual_seed(0)
        return pretrain_vision(
            lambda ims: proc.image_processor(ims, crop_to_patches=False, return_tensors="pt")["pixel_values"],
            lambda pv: m.get_image_features(pixel_values=pv, vision_feature_layer=-1,
                                            vision_feature_select_strategy="default").pooler_output,
            [*m.vision_tower.parameters(), *m.multi_modal_projector.parameters()],
            (4, 4), model.config.text_config.hidden_size, steps, pool=512, held_out=64)

    before = run(0)
    after = run(60)
    # Measured: box edge error 28 -> 11.5 px on the 128 px canvas, colour 0.16 -> 0.77, presence 0.58 -> 0.88.
    assert after.box_l1_px < 0.7 * before.box_l1_px, (before, after)
    assert after.colour_acc > before.colour_acc + 0.2 and after.presence_acc > before.presence_acc, (before, after)
