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
