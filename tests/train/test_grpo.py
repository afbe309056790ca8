"""The GRPO row table (what each dataset row hands the rollout and the reward functions), and
the scoring forward: each rollout is scored with its own pixels, and its per-token log-probs are
those of a plain forward of that rollout alone.

The scoring batch is built to collide: two rollouts with the same prompt text and the same
completion (a crop call, the tool turn, an answer) on DIFFERENT images, so their token ids are
identical and only the row's identity tells their pixels apart; a third prompt of another image
size puts padding into the batch. It goes through TRL's own path (generate and score, shuffle,
``_compute_loss``), with old log-probs computed too (``num_iterations`` 2), no Ray.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.train.test_rollout import Scripted
from vlm_train.config import ModelConfig, ToolsConfig
from vlm_train.data.sample import Box, GroundingTarget, Message, Sample, image, text
from vlm_train.data.synthetic import generate
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.train.grpo import grpo_rows
from vlm_train.train.rollout import merge_mm


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


IMAGES = {"red.png": ((64, 64), (200, 30, 30)), "green.png": ((64, 64), (30, 200, 30)), "wide.png": ((96, 64), (30, 30, 200))}


def _sample(i: int, name: str, phrase: str) -> Sample:
    size = IMAGES[name][0]
    return Sample(f"s{i}", [Message("user", [image(name), text(f"Please provide the bounding box of {phrase}.")]),
                            Message("assistant", [text("x")])],
                  image_sizes=[size], targets=[GroundingTarget(phrase, Box(0, 0, 32, 32))])


def _plain_logps(model, row) -> torch.Tensor:
    """Log-probs of the row's completion tokens from a forward of that row alone (no padding)."""
    ids = torch.tensor([row.ids])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **merge_mm(row.mm)).logits[0].float()
    n = len(row.completion_ids)
    logp = torch.log_softmax(logits[-n - 1:-1], -1)
    return logp.gather(-1, ids[0, -n:].clamp(min=0).unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("family_name", ["internvl", "ovis2_5"])
def test_colliding_rollouts_scored_with_own_pixels(family_name, tmp_path, monkeypatch):
    from datasets import Dataset
    from trl import GRPOConfig

    from vlm_train.train.grpo import VLMGRPOTrainer, wrap_reward

    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29534"}.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "imgs"
    root.mkdir()
    for name, (size, colour) in IMAGES.items():
        im = Image.new("RGB", size, (0, 0, 0))
        im.paste(colour, (0, 0, size[0] // 2, size[1]))
        im.save(root / name)
    torch.manual_seed(0)
    fam = get_family(family_name)
    model, proc = fam.load(ModelConfig(family=family_name, path=str(fam.tiny(tmp_path / "tiny"))), dtype=torch.float32)
    samples = [_sample(0, "red.png", "the square"), _sample(1, "green.png", "the square"),
               _sample(2, "wide.png", "the wide blue shape"), _sample(3, "wide.png", "the wide blue shape")]
    builder = fam.make_inputs(proc, InputsConfig(image_roots=(str(root),)))
    from vlm_train.train.rollout import CropToolRollout

    rollout = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=1), [str(root)])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], per_device_train_batch_size=4,
        num_generations=2, max_completion_length=400, num_iterations=2, beta=0.0, temperature=1.0,
        save_strategy="no", seed=0,
    )
    args.reward_weights = [1.0]
    trainer = VLMGRPOTrainer(
        model=model, reward_funcs=[wrap_reward(lambda completions, **kw: [0.0] * len(completions))], args=args,
        train_dataset=Dataset.from_list(grpo_rows(samples, fam.coords)), processing_class=proc, rollout=rollout,
    )
    # Every rollout writes the same crop call, then (after the live tool turn) the same answer.
    tok = proc.tokenizer
    call = fam.chat.tool_call("crop", {"bbox_2d": fam.coords.to_values(Box(0, 0, 32, 32), 64, 64)})
    script = [tok(call, add_special_tokens=False).input_ids, tok("the square" + fam.chat.turn_end, add_special_tokens=False).input_ids]
    rows = []
    generate, start = rollout.generate, rollout.start
    monkeypatch.setattr(rollout, "generate", lambda m, rs, gen, n: generate(Scripted(m, list(script)), rs, gen, n))
    monkeypatch.setattr(rollout, "start", lambda s: rows.append(start(s)) or rows[-1])
    fed, scored = [], []
    hook = model.register_forward_pre_hook(lambda mod, a, kw: fed.append(kw["pixel_values"].clone()), with_kwargs=True)
    score = trainer._get_per_token_logps_and_entropies

    def spy(*a, **kw):
        out = score(*a, **kw)
        scored.append((a[1], out[0]))
        return out

    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", spy)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this bypasses
    batch = trainer._prepare_inputs(grpo_rows(samples, fam.coords))  # generate, score old log-probs, shuffle
    trainer._compute_loss(trainer.model, batch)
    hook.remove()

    assert [r.calls for r in rows] == [1] * 4 and rows[0].ids == rows[1].ids and rows[0].ids != rows[2].ids
    own = [merge_mm(r.mm)["pixel_values"] for r in rows]
    assert not torch.equal(own[0], own[1]), "the colliding rows' images must differ, or the test is vacuous"
    # (a) The scoring forward (after TRL's shuffle) was fed every row's own pixels, each row's once.
    def sums(t):
        return sorted(round(float(x), 3) for x in t.flatten(1).sum(1))

    assert len(fed) == 2  # old log-probs (rollout order), then the loss (shuffled)
    for pixels in fed:
        assert sums(pixels) == sums(torch.cat(own))
    # (b) Per-token log-probs of the scoring forward == a plain forward of each row alone, at every
    # generated token (the answer after the tool turn included), matched one to one.
    plain = [_plain_logps(trainer.model, r) for r in rows]
    assert not torch.allclose(plain[0], plain[1], atol=1e-3)
    for ids, logps in scored:
        free = list(range(len(rows)))
        for j in range(ids.size(0)):
            completion = ids[j, -logps.size(1):].tolist()
            hit = None
            for k in free:
                n, gen = len(rows[k].completion_ids), torch.tensor(rows[k].mask, dtype=torch.bool)
                if completion[:n] != [t if t >= 0 else rollout.pad for t in rows[k].completion_ids]:
                    continue
                if torch.allclose(logps[j, :n][gen], plain[k][gen], atol=1e-5):
                    hit = k
                    break
            assert hit is not None, f"row {j} of the scoring forward matches no rollout scored alone"
            free.remove(hit)
