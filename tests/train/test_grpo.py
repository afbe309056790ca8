"""The GRPO row table: what each dataset row hands the rollout and the reward functions."""

from __future__ import annotations

import json

from vlm_train.data.sample import Sample
from vlm_train.data.synthetic import generate
from vlm_train.models import get_family
from vlm_train.train.grpo import grpo_rows


def test_rows_carry_prompt_target_regions_and_coords(tmp_path):
    samples = generate(tmp_path, n=6, seed=3, image_size=64, max_shapes=3, kind="mixed")
    coords = get_family("internvl").coords
    rows = grpo_rows(samples, coords)
    assert len(rows) == len(samples)
    kinds = set()
    for s, r in zip(samples, rows, strict=True):
        kinds.add(s.meta["kind"])
        assert set(r) == {"prompt", "sample", "image_size", "target_box", "regions", "answer", "coords"}
        # The prompt is the user's text alone (no answer leaks into it).
        assert r["prompt"] == [{"role": "user", "content": " ".join(m.text() for m in s.messages if m.role == "user")}]
        assert r["prompt"][0]["content"] and s.meta["answer"] not in r["prompt"][0]["content"]
        assert Sample.from_json(r["sample"]) == s  # the full sample travels for the rollout
        assert r["image_size"] == [64, 64]
        assert r["target_box"] == s.targets[0].box.as_list()
        assert r["regions"] == [{"label": g.phrase, "box": g.box.as_list()} for g in s.regions] and r["regions"]
        assert r["answer"] == s.meta["answer"]
        assert r["coords"] == coords.name  # the rewards look the convention up by this name
        json.dumps(r)  # a datasets.Dataset column: plain JSON types only
    assert kinds == {"grounding", "toolqa"}


def test_rows_without_target_or_image():
    s = Sample(id="t", messages=[])
    (r,) = grpo_rows([s], get_family("ovis2_5").coords)
    assert r["target_box"] is None and r["image_size"] is None and r["regions"] == [] and r["answer"] is None
