"""model.lr_scale: each module group trains at the stage's rate times its scale, through the
trainer's own optimizer and scheduler."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

from vlm_train.config_base import ConfigError
from vlm_train.train.param_groups import GroupLearningRates, split_by_scale

GROUPS = {"vision": ["model.vision_tower"], "projector": ["model.multi_modal_projector"],
          "llm": ["model.language_model", "lm_head"]}


class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.vision_tower = torch.nn.Linear(4, 4)
        self.multi_modal_projector = torch.nn.Linear(4, 4)
        self.language_model = torch.nn.Linear(4, 4)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Inner()
        self.lm_head = torch.nn.Linear(4, 2)


class ScaledTrainer(GroupLearningRates, Trainer):
    pass


def lr_of(optimizer, model, name):
    p = dict(model.named_parameters())[name]
    return next(g["lr"] for g in optimizer.param_groups if any(q is p for q in g["params"]))


def test_scaled_groups_follow_the_schedule(tmp_path):
    model = Tiny()
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, lr_scheduler_type="linear", max_steps=10,
                             weight_decay=0.1, report_to=[], use_cpu=True)
    trainer = ScaledTrainer(model=model, args=args)
    trainer.lr_groups, trainer.lr_scales = GROUPS, {"projector": 0.1, "vision": 0.5}
    opt = trainer.create_optimizer()
    assert lr_of(opt, model, "model.multi_modal_projector.weight") == pytest.approx(1e-4)
    assert lr_of(opt, model, "model.vision_tower.bias") == pytest.approx(5e-4)
    assert lr_of(opt, model, "model.language_model.weight") == pytest.approx(1e-3)
    assert lr_of(opt, model, "lm_head.weight") == pytest.approx(1e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # the logged learning_rate stays the stage's
    # Every trainable parameter is in exactly one group, and weight decay is kept per split.
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    decay = {g["weight_decay"] for g in opt.param_groups if any(p.ndim == 1 for p in g["params"])}
    assert decay == {0.0}
    # Calling again (DeepSpeed's init calls it too) does not split the groups a second time.
    assert len(trainer.create_optimizer().param_groups) == len(opt.param_groups)
    # The scheduler scales each group's own rate: halfway through a linear decay, half of each.
    sched = trainer.create_scheduler(10, optimizer=opt)
    for _ in range(5):
        opt.step()
        sched.step()
    assert lr_of(opt, model, "model.multi_modal_projector.weight") == pytest.approx(0.5e-4)
    assert lr_of(opt, model, "model.language_model.weight") == pytest.approx(0.5e-3)


def test_no_scale_leaves_the_trainers_optimizer_alone(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to=[], use_cpu=True)
    trainer = ScaledTrainer(model=Tiny(), args=args)
    trainer.lr_groups, trainer.lr_scales = GROUPS, {"projector": 1.0}
    assert len(trainer.create_optimizer().param_groups) == 2  # HF's decay / no-decay groups


def test_peft_prefix_and_unknown_group():
    m = Tiny()
    names = {id(p): "base_model.model." + n for n, p in m.named_parameters()}
    groups = split_by_scale([{"params": list(m.parameters()), "lr": 1.0}], names, GROUPS, {"llm": 2.0})
    assert sorted(g["lr"] for g in groups) == [1.0, 2.0]
    with pytest.raises(ValueError, match="model.lr_scale.projector"):
        split_by_scale([{"params": list(m.parameters()), "lr": 1.0}], names, {"llm": ["lm_head"]}, {"projector": 0.1})


def test_config_names_the_key():
    from vlm_train.config import load_config

    cfg = load_config("configs/debug/internvl_tiny_pipeline.yaml", ["model.lr_scale={projector: 0.1}"])
    assert cfg.model.lr_scale == {"projector": 0.1}
    with pytest.raises(ConfigError, match="model.lr_scale.proj"):
        load_config("configs/debug/internvl_tiny_pipeline.yaml", ["model.lr_scale={proj: 0.1}"])
    with pytest.raises(ConfigError, match="model.lr_scale.llm"):
        load_config("configs/debug/internvl_tiny_pipeline.yaml", ["model.lr_scale={llm: -1}"])
