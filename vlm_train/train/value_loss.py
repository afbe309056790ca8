"""SFT loss with value-smoothed targets for number tokens (a config choice, ``loss.coordinate_sigma``).

Plain cross-entropy punishes a predicted coordinate of 413 for a target of 412 as hard as one of
7: the model gets no signal that it was close, and a tiny model trained from scratch learns boxes
slowly. Here each labelled token that is a coordinate value is trained against a Gaussian over
the value tokens centred on the target value (standard deviation ``sigma`` in value units),
every other labelled token against its one-hot target, as in label smoothing with a
distance-aware prior (Szegedy et al. 2016, https://arxiv.org/abs/1512.00567; the same idea as
the Gaussian heatmap targets of keypoint models). Which tokens are values is the family's
business (``Family.value_tokens``); with none the loss is plain cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vlm_train.models.base import IGNORE


class ValueSmoothedLoss:
    """``loss(logits, labels, num_items_in_batch=None)``: summed per-token loss / token count.

    ``labels`` are aligned with the inputs (the model's own convention); they are shifted here.
    """

    def __init__(self, value_tokens: Mapping[int, int], sigma: float):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        self.ids = torch.tensor(sorted(value_tokens), dtype=torch.long)
        self.values = torch.tensor([value_tokens[int(i)] for i in self.ids], dtype=torch.float)
        self.max_id = int(self.ids.max()) if len(self.ids) else -1

    def _lookup(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(is a value token, its value) per label."""
        table = torch.full((self.max_id + 2,), -1.0, device=labels.device)
        table[self.ids.to(labels.device)] = self.values.to(labels.device)
        vals = table[labels.clamp(min=0, max=self.max_id + 1)]
        return vals >= 0, vals

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits, labels = logits[:, :-1], labels[:, 1:]
        keep = labels != IGNORE
        logp = logits[keep].float().log_softmax(-1)
        target = labels[keep]
        per_token = -logp.gather(1, target[:, None]).squeeze(1)
        if len(self.ids):
            is_value, vals = self._lookup(target)
            if is_value.any():
                grid = self.values.to(logp.device)
                w = torch.exp(-((grid[None] - vals[is_value][:, None]) ** 2) / (2 * self.sigma**2))
                w = w / w.sum(1, keepdim=True)
                soft = -(w * logp[is_value][:, self.ids.to(logp.device)]).sum(1)
                per_token = torch.where(is_value, torch.zeros_like(per_token), per_token)
                per_token = per_token.index_put((is_value.nonzero().squeeze(1),), soft)
        n = keep.sum() if num_items_in_batch is None else num_items_in_batch
        return per_token.sum() / torch.as_tensor(n, device=per_token.device).clamp(min=1)
