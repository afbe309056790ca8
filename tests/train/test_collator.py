"""Packed SFT batches train exactly what padded batches train (both families, fp32, CPU, sdpa,
images of several sizes, a crop tool turn): same loss and gradients for every loss weighting,
no attention across samples (bit-identical logits), labels never crossing a boundary, and
``num_input_tokens_seen`` counting real tokens. The loss is the trainer's own compute_loss."""

from __future__ import annotations

import pytest
import torch

from vlm_train.config import ModelConfig
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.testing.length_mix import length_mix
from vlm_train.train.collator import SFTCollator
from vlm_train.train.loss_weights import IGNORE

MAX_LEN = 1024


@pytest.fixture(scope="module", params=["internvl", "ovis2_5"])
def env(request, tmp_path_factory):
    from vlm_train.testing.sft_trainer import local_sft_trainer

    tmp = tmp_path_factory.mktemp(request.param)
    fam = get_family(request.param)
    torch.manual_seed(0)
    model, proc = fam.load(ModelConfig(family=request.param, path=str(fam.tiny(tmp / "tiny")), attn_implementation="sdpa"),
                           dtype=torch.float32)
    samples = length_mix(tmp / "img", 4, seed=3, answer_words=(3, 40), image_sides=(32, 100), tool_fraction=0.4)
    assert any(m.role == "tool" for s in samples for m in s.messages)  # a tool turn is covered
    assert max(len(s.image_parts()) for s in samples) > 1  # and multi-image samples
    builder = fam.make_inputs(proc, InputsConfig(image_roots=(str(tmp / "img"),), max_length=MAX_LEN))
    rows = [{"sample": s.to_json()} for s in samples]
    padded = SFTCollator(builder, fam.merge_visuals, max_length=MAX_LEN)
    trainer = local_sft_trainer(model, proc, padded, rows, tmp / "out", max_length=MAX_LEN,
                                per_device_train_batch_size=len(samples))
    return fam, builder, samples, rows, trainer


def collators(fam, builder, weighting="token"):
    return (SFTCollator(builder, fam.merge_visuals, max_length=MAX_LEN, weighting=weighting),
            SFTCollator(builder, fam.merge_visuals, max_length=MAX_LEN, weighting=weighting, packed=True))


def loss_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_padded_batch_is_the_builders_batch(env):
    fam, builder, samples, rows, _ = env
    ours, ref = collators(fam, builder)[0](rows), builder(samples)
    for k, v in ref.items():
        assert torch.equal(ours[k], v), k


def test_packed_loss_equals_padded_for_every_weighting(env):
    fam, builder, _, rows, trainer = env
    trainer.model.train()
    for weighting in ("token", "sample", "square"):
        pad, pack = collators(fam, builder, weighting)
        packed = pack(rows)
        assert packed["input_ids"].shape[0] < len(rows)  # several samples do share a row
        with torch.no_grad():
            lp = trainer.compute_loss(trainer.model, pad(rows))
            lk = trainer.compute_loss(trainer.model, packed)
        assert abs(lp.item() - lk.item()) < 1e-5, (weighting, lp.item(), lk.item())


def test_packed_gradients_equal_padded(env):
    """``square`` weighting: neither all tokens nor all samples weigh the same."""
    fam, builder, _, rows, trainer = env
    pad, pack = collators(fam, builder, "square")
    trainer.model.train()
    lp, gp = loss_and_grads(trainer, pad(rows))
    lk, gk = loss_and_grads(trainer, pack(rows))
    assert abs(lp.item() - lk.item()) < 1e-5
    assert gp.keys() == gk.keys() and len(gp) > 10
    vision = [n for n in gp if any(n.startswith(g) for g in fam.module_groups["vision"])]
    assert vision and all(gp[n].abs().sum() > 0 for n in vision[:3])  # images reached the loss
    for n in gp:
        assert torch.allclose(gp[n], gk[n], atol=1e-5, rtol=0), (n, (gp[n] - gk[n]).abs().max().item())


def test_segment_attention_keeps_packed_equal_to_padded(env):
    """sdpa_segments (per-sample attention from cu_seq_lens, used for packed rows on sdpa):
    the packed loss and the padded one are unchanged."""
    from vlm_train.train.segment_attention import use_segment_attention

    fam, builder, _, rows, trainer = env
    model = trainer.model.train()
    pad = collators(fam, builder)[0]
    pack = SFTCollator(builder, fam.merge_visuals, max_length=MAX_LEN, packed=True, varlen_kwargs=True)
    with torch.no_grad():
        ref = trainer.compute_loss(model, pad(rows))
        assert use_segment_attention(model)
        try:
            padded, packed = trainer.compute_loss(model, pad(rows)), trainer.compute_loss(model, pack(rows))
        finally:
            model.set_attn_implementation("sdpa")
    assert abs(padded.item() - ref.item()) < 1e-6 and abs(packed.item() - ref.item()) < 1e-5


def test_token_weighting_is_trls_loss(env):
    """With ``token`` weighting our loss is TRL's own compute_loss on the same padded batch."""
    from trl import SFTTrainer

    fam, builder, _, rows, trainer = env
    batch = collators(fam, builder)[0](rows)
    trl_batch = {k: v for k, v in batch.items() if k not in ("loss_weights", "real_tokens")}
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, dict(batch))
        theirs = SFTTrainer.compute_loss(trainer, trainer.model, trl_batch)
    assert abs(ours.item() - theirs.item()) < 1e-6


def test_changing_sample_2_leaves_sample_1_bit_identical(env):
    """Sample 1 sits AFTER sample 2 in the row, so only the block-diagonal mask (not causality)
    can keep it from seeing sample 2; sample 2 changes in text tokens and pixels."""
    fam, builder, _, rows, trainer = env
    pack = collators(fam, builder)[1]
    s1, s2 = pack.encode(rows[0]), pack.encode(rows[1])
    changed = {k: v.clone() for k, v in s2.items()}
    text = (changed["input_ids"] >= 0) & (changed["labels"] != IGNORE)
    changed["input_ids"][text] = (changed["input_ids"][text] + 7) % 100 + 10
    changed["pixel_values"] = changed["pixel_values"] + 0.5
    model = trainer.model.eval()

    def sample1_logits(other):
        batch = pack.pack([other, s1], [[0, 1]])
        inputs = {k: v for k, v in batch.items() if k not in ("loss_weights", "real_tokens", "labels")}
        with torch.no_grad():
            logits = model(**inputs).logits
        n2 = other["input_ids"].numel()
        return logits[0, n2 : n2 + s1["input_ids"].numel()], logits[0, :n2]

    a1, a2 = sample1_logits(s2)
    b1, b2 = sample1_logits(changed)
    assert not torch.equal(a2, b2)  # sample 2 did change
    assert torch.equal(a1, b1)


def test_labels_never_cross_a_boundary(env):
    fam, builder, _, rows, _ = env
    pack = collators(fam, builder)[1]
    batch = pack(rows)
    encs = [pack.encode(r) for r in rows]
    plan = pack.rows(rows, encs)
    for r, row in enumerate(plan):
        at = 0
        for i in row:
            n = encs[i]["input_ids"].numel()
            span = slice(at, at + n)
            assert batch["position_ids"][r, at] == 0 and torch.equal(batch["position_ids"][r, span], torch.arange(n))
            assert batch["labels"][r, at] == IGNORE  # never predicted from the previous sample
            assert torch.equal(batch["labels"][r, at + 1 : at + n], encs[i]["labels"][1:])
            assert torch.equal(batch["input_ids"][r, span], encs[i]["input_ids"])
            at += n
        assert (batch["labels"][r, at:] == IGNORE).all() and (batch["loss_weights"][r, at:] == 0).all()
        assert at <= MAX_LEN


def test_num_input_tokens_seen_counts_real_tokens(env):
    fam, builder, _, rows, trainer = env
    pad, pack = collators(fam, builder)
    real = int(pad(rows)["attention_mask"].sum())
    for batch in (pad(rows), pack(rows)):
        before = trainer.state.num_input_tokens_seen
        trainer._track_num_input_tokens(batch)
        assert trainer.state.num_input_tokens_seen - before == real


def test_varlen_kwargs_cover_every_token_once(env):
    """Flash-attention varlen segments: one per sample and per padding tail, in row-major order."""
    fam, builder, _, rows, _ = env
    pack = SFTCollator(builder, fam.merge_visuals, max_length=MAX_LEN, packed=True, varlen_kwargs=True)
    batch = pack(rows)
    cu = batch["cu_seq_lens_q"]
    assert cu[-1] == batch["input_ids"].numel()
    starts = set(cu[:-1].tolist())
    flat_pos = batch["position_ids"].reshape(-1)
    assert starts == set(torch.nonzero(flat_pos == 0).flatten().tolist())
    assert batch["max_length_q"] == int(cu.diff().max())
