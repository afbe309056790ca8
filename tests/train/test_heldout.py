"""The held-out curve during training is scored as the stage's evaluation: with the crop tool on,
on the answer after the tool turn, not on the crop call."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch

from vlm_train.config import ToolsConfig
from vlm_train.data.sample import Box, GroundingTarget, Message, Part, Sample
from vlm_train.models import get_family
from vlm_train.train import heldout


def _samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        box = Box(10 + i, 20, 40 + i, 50)
        out.append(Sample(id=f"s{i}", messages=[Message("user", [Part("image", media="x.png"), Part("text", text="the red circle")])],
                          image_sizes=[(128, 128)], targets=[GroundingTarget("the red circle", box)],
                          regions=[GroundingTarget("large red circle", box)]))
    return out


def test_crop_tool_policies_are_scored_on_their_answers(monkeypatch):
    family = get_family("internvl")
    samples = _samples(4)
    answer = {s.id: family.grounding_answer("the red circle", s.targets[0].box, 128, 128) for s in samples}
    # The crop call's region: the shape with a margin, IoU well under 0.5 with the shape itself.
    call = family.grounding_answer("the red circle", Box(0, 5, 60, 70), 128, 128)
    seen = {}

    def with_tool(model, processor, fam, builder, shard, image_roots, tools, batch_size, max_new_tokens):
        seen["tools"], seen["roots"] = tools, image_roots
        return [[call, answer[s.id]] for s in shard], [1] * len(shard)

    from vlm_train.eval import grounding

    monkeypatch.setattr(grounding, "generate_with_tool", with_tool)
    monkeypatch.setattr(grounding, "generate_texts", lambda *a, **k: [call] * len(a[4]))
    import trl.models

    @contextlib.contextmanager
    def unwrap(model, accelerator, gather_deepspeed3_params=True):
        yield torch.nn.Linear(1, 1)

    monkeypatch.setattr(trl.models, "unwrap_model_for_generation", unwrap)
    trainer = SimpleNamespace(model_wrapped=None, accelerator=None, callback_handler=SimpleNamespace(callbacks=[]))

    def curve(tools):
        cb = heldout.HeldoutEvalCallback(trainer, family, None, None, samples, 2, 4, 0, 1, tools=tools, image_roots=["/r"])
        state = SimpleNamespace(max_steps=4, global_step=2, log_history=[])
        cb.on_train_begin(None, state, None)
        cb.on_step_end(None, state, None)
        return state.log_history[-1]

    tools = ToolsConfig(crop=True, max_calls=1)
    with_crop = curve(tools)
    assert seen["tools"] is tools and seen["roots"] == ["/r"]
    assert with_crop["heldout/acc@0.5"] == 1.0 and with_crop["heldout/n"] == 4
    # Without the tool the same policy's first turn is all there is: scored on the call's box.
    assert curve(None)["heldout/acc@0.5"] == 0.0
