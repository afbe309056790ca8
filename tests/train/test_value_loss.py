"""The value-smoothed SFT loss: near misses cost less than far ones; other tokens are plain CE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlm_train.train.value_loss import ValueSmoothedLoss

# vocab: ids 0-9 words, ids 10..110 the values 0..100
VALUES = {10 + v: v for v in range(101)}
V = 111


def _logits_for(pred_id: int, seq: int = 3) -> torch.Tensor:
    logits = torch.full((1, seq, V), -5.0)
    logits[0, :, pred_id] = 5.0
    return logits


def test_near_misses_cost_less_than_far_ones_and_exact_costs_least():
    loss = ValueSmoothedLoss(VALUES, sigma=3.0)
    labels = torch.tensor([[-100, 10 + 50, -100]])  # position 1 is predicted from position 0
    exact, near, far = (loss(_logits_for(10 + v), labels).item() for v in (50, 52, 90))
    assert exact < near < far
    # plain cross-entropy cannot tell a near miss from a far one
    ce = [F.cross_entropy(_logits_for(10 + v)[0, :1], labels[0, 1:2]).item() for v in (52, 90)]
    assert ce[0] == pytest.approx(ce[1])


def test_non_value_tokens_are_plain_cross_entropy_and_counts_normalise():
    loss = ValueSmoothedLoss(VALUES, sigma=3.0)
    logits = torch.randn(2, 4, V)
    labels = torch.tensor([[-100, 3, 4, -100], [-100, -100, 7, 1]])
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert loss(logits, labels).item() == pytest.approx(ref.item(), rel=1e-6)
    # num_items_in_batch (tokens over all accumulated micro-batches and ranks) divides the sum
    assert loss(logits, labels, num_items_in_batch=8).item() == pytest.approx(ref.item() * 4 / 8, rel=1e-6)


def test_gradient_flows_and_bad_sigma():
    logits = torch.randn(1, 3, V, requires_grad=True)
    ValueSmoothedLoss(VALUES, sigma=2.0)(logits, torch.tensor([[-100, 40, 5]])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sigma"):
        ValueSmoothedLoss(VALUES, sigma=0)
