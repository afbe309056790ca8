"""The NaN/Inf guard on a real transformers Trainer: stop before the bad step's checkpoint,
or skip the batch and count it; the message names the step and the batch's sample ids."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from vlm_train.train.nonfinite import NonFiniteError, NonFiniteGuard


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, y):
        return {"loss": ((self.lin(x).squeeze(-1) - y) ** 2).mean()}


def _collate(features):
    return {"x": torch.tensor([f["x"] for f in features]), "y": torch.tensor([f["y"] for f in features])}


def _trainer(tmp_path, guard, bad_value):
    rows = [{"sample": json.dumps({"id": f"s{i}"}), "x": [1.0, float(i)], "y": 0.5} for i in range(6)]
    rows[3] = {"sample": json.dumps({"id": "poisoned"}), "x": [bad_value, 1.0], "y": 0.5}
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=1,
                             save_steps=1, save_strategy="steps", report_to=[], use_cpu=True, logging_steps=1,
                             remove_unused_columns=False, learning_rate=1e-2, seed=0)
    torch.manual_seed(0)
    trainer = Trainer(model=Tiny(), args=args, train_dataset=rows, data_collator=guard.wrap_collator(_collate))
    return guard.install(trainer)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_before_its_checkpoint(tmp_path, bad_value):
    trainer = _trainer(tmp_path, NonFiniteGuard("stop"), bad_value)
    with pytest.raises(NonFiniteError, match=r"non-finite loss .* at step (\d+) \(batch samples: poisoned\)") as e:
        trainer.train()
    step = int(str(e.value).split("at step ")[1].split()[0])
    saved = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "out").glob("checkpoint-*"))
    assert saved == list(range(1, step)), (saved, step)  # every good step, nothing of the bad one
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nonfinite_loss_skipped_and_counted(tmp_path):
    guard = NonFiniteGuard("skip")
    trainer = _trainer(tmp_path, guard, float("nan"))
    trainer.train()
    assert guard.skipped == 1 and trainer.state.global_step == 6
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    with pytest.raises(ValueError, match="on_nonfinite"):
        NonFiniteGuard("ignore")


def test_on_nonfinite_in_config(tmp_path):
    from tests.cluster.helpers import write_config
    from vlm_train.config import ConfigError, load_config

    assert load_config(write_config(tmp_path, "n")).run.on_nonfinite == "stop"
    assert load_config(write_config(tmp_path, "n"), ["run.on_nonfinite=skip"]).run.on_nonfinite == "skip"
    with pytest.raises(ConfigError, match="run.on_nonfinite"):
        load_config(write_config(tmp_path, "n"), ["run.on_nonfinite=ignore"])


class Masked(nn.Module):
    """A token-style loss: the mean over positions whose label is not -100 (0/0 when none is)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, labels):
        err = (self.lin(x).squeeze(-1) - labels.float()) ** 2
        keep = labels != -100
        return {"loss": (err * keep).sum() / keep.sum()}


def test_batch_whose_learned_tokens_were_all_truncated_is_dropped(tmp_path):
    rows = [{"sample": json.dumps({"id": f"s{i}"}), "x": [1.0, float(i)], "labels": 1} for i in range(5)]
    rows[2] = {"sample": json.dumps({"id": "all-truncated"}), "x": [1.0, 2.0], "labels": -100}

    def collate(features):
        return {"x": torch.tensor([f["x"] for f in features]), "labels": torch.tensor([f["labels"] for f in features])}

    guard = NonFiniteGuard("stop")  # even in stop mode: nothing is wrong, there is just nothing to learn
    args = TrainingArguments(output_dir=str(tmp_path / "o"), max_steps=5, per_device_train_batch_size=1, report_to=[],
                             use_cpu=True, logging_steps=1, remove_unused_columns=False, save_strategy="no")
    trainer = guard.install(Trainer(model=Masked(), args=args, train_dataset=rows, data_collator=guard.wrap_collator(collate)))
    trainer.train()
    assert guard.dropped == 1 and guard.skipped == 0 and trainer.state.global_step == 5
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
