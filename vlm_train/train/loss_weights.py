"""Loss weighting of SFT tokens: one rule for padded and packed batches.

Every learned token t of a sample with n learned tokens gets weight ``n ** -p`` and the loss
of a global batch (all micro-batches of an optimizer step, all ranks) is
``sum(w_t * nll_t) / sum(w_t)``:

- ``token`` (p = 0, TRL's default): every learned token counts the same; long answers weigh more.
- ``sample`` (p = 1): the mean over samples of each sample's mean token loss.
- ``square`` (p = 0.5, the ``loss_reduction: square`` of a family's official fine-tuning code): in
  between.

Weights belong to samples, not rows, so the loss of a packed batch equals the loss of the
same samples padded. A sample's first token never has a label: in a padded row the causal
shift drops it, in a packed row it would be predicted from the previous sample's last token.
"""

from __future__ import annotations

import torch

from vlm_train.models.base import IGNORE
WEIGHTINGS = {"token": 0.0, "sample": 1.0, "square": 0.5}


def sample_weights(labels: torch.Tensor, weighting: str) -> torch.Tensor:
    """[n] float32 weights for one sample's labels (its first position never counts)."""
    learned = labels != IGNORE
    learned[0] = False
    n = int(learned.sum())
    w = torch.zeros(labels.shape, dtype=torch.float32)
    if n:
        w[learned] = float(n) ** -WEIGHTINGS[weighting]
    return w
