"""Grounding evaluation: protocol scoring on real generate() output, report fields, box images."""

from __future__ import annotations

import torch
from PIL import Image

from vlm_train.config import ModelConfig
from vlm_train.data.sample import Box, GroundingTarget, Message, Sample, image, text
from vlm_train.eval.grounding import draw_boxes, evaluate, log_to_tensorboard
from vlm_train.models import get_family
from vlm_train.testing.checks import tb_image_tags, tb_scalars


class Answers(torch.nn.Module):
    """A real model whose generate() answers with fixed texts (one per call, whole batch)."""

    def __init__(self, model, tok, texts):
        super().__init__()
        self.model, self.tok, self.texts = model, tok, list(texts)

    def generate(self, input_ids, max_new_tokens, **kw):
        rows = [self.tok(self.texts.pop(0) + "<|im_end|>", add_special_tokens=False).input_ids for _ in range(input_ids.size(0))]
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        tail = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, tail], 1)


def _samples(root):
    Image.new("RGB", (100, 50), "white").save(root / "a.png")
    out = []
    for i, box in enumerate([Box(0, 0, 50, 50), Box(50, 0, 100, 50)]):
        out.append(Sample(f"s{i}", [Message("user", [image("a.png"), text("where?")]), Message("assistant", [text("x")])],
                          image_sizes=[(100, 50)], targets=[GroundingTarget("t", box)],
                          regions=[GroundingTarget("a", Box(0, 0, 50, 50)), GroundingTarget("b", Box(50, 0, 100, 50))],
                          meta={"n_shapes": 2}))
    return out


def test_evaluate_scores_protocol(tmp_path, tiny_internvl):
    fam = get_family("internvl")
    model, proc = fam.load(ModelConfig(path=str(tiny_internvl)), dtype=torch.float32)
    samples = _samples(tmp_path)
    # first: exact box (IoU 1); second: the other shape (IoU 0)
    answers = ["<ref>t</ref><box>[[0, 0, 500, 1000]]</box>", "<ref>t</ref><box>[[0, 0, 500, 1000]]</box>"]
    res = evaluate(Answers(model, proc.tokenizer, answers), proc, fam, samples, [str(tmp_path)], batch_size=1)
    assert res.n == 2 and res.acc == 0.5 and abs(res.mean_iou - 0.5) < 1e-6
    assert res.random_shape_baseline == 0.5  # two shapes, one of them the target
    # Both answers box a shape of the image; one of them the named one.
    assert res.by_shapes == {"2": {"acc": 0.5, "mean_iou": 0.5, "n": 2, "named_shape_share": 0.5, "shape_hits": 2}}
    assert res.named_shape_share == 0.5 and res.shape_hits == 2
    assert res.box_valid == 1.0
    # Unparseable answer -> IoU 0, box_valid 0
    res = evaluate(Answers(model, proc.tokenizer, ["no box here"] * 2), proc, fam, samples, [str(tmp_path)], batch_size=2)
    assert res.acc == 0.0 and res.mean_iou == 0.0 and res.predictions[0]["pred"] is None

    log_to_tensorboard(res, tmp_path / "tb", "eval/sft", 1, [str(tmp_path)])
    assert tb_scalars(tmp_path / "tb")["eval/sft/acc@0.5"] == [(1, 0.0)]
    assert tb_scalars(tmp_path / "tb")["eval/sft/named_shape_share"] == [(1, 0.0)]
    assert any(t.startswith("eval/sft/boxes/") for t in tb_image_tags(tmp_path / "tb"))


def test_draw_boxes_colours():
    im = draw_boxes(Image.new("RGB", (20, 20), "black"), [2, 2, 10, 10], [5, 5, 15, 15])
    assert im.getpixel((2, 6)) == (0, 255, 0)  # ground truth edge: green
    assert im.getpixel((15, 12)) == (255, 0, 0)  # prediction edge: red
