"""Thinking budget (docs/models.md): the stop text appended verbatim, phase-2 allowance, no insertion when
</think> comes in time. A logits processor scripts the tiny model's choices, so the tests are
deterministic."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from vlm_train.data.sample import Message, Sample, image, text
from vlm_train.infer.thinking import generate, generate_with_budget
from vlm_train.models.base import InputsConfig
from vlm_train.models.ovis2_5 import FAMILY


class Script(LogitsProcessor):
    """Forces, per generate call and row, the token sequence a script function returns.

    ``script(call, row, step) -> token id``; a call starts whenever the generated length drops.
    """

    def __init__(self, script):
        self.script = script
        self.call = -1
        self.last_len = None
        self.batch_sizes: list[int] = []

    def __call__(self, input_ids, scores):
        n = input_ids.shape[1]
        if self.last_len is None or n <= self.last_len:
            self.call += 1
            self.start = n
            self.batch_sizes.append(scores.shape[0])
        self.last_len = n
        out = torch.full_like(scores, -1e9)
        for row in range(scores.shape[0]):
            out[row, self.script(self.call, row, n - self.start)] = 0.0
        return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vlm_train.models.ovis2_5.modeling import Ovis2_5
    from vlm_train.models.ovis2_5.processor import Ovis2_5Processor

    path = FAMILY.tiny(tmp_path_factory.mktemp("budget"), seed=1)
    return Ovis2_5.from_pretrained(path, dtype=torch.float32).eval(), Ovis2_5Processor.from_pretrained(path)


def _batch(processor, n):
    from PIL import Image

    samples = [Sample(str(i), [Message("user", [image("a"), text("Think " * (i + 1))])]) for i in range(n)]
    imgs = [[Image.new("RGB", (64, 64), (i * 40, 0, 0))] for i in range(n)]
    return FAMILY.make_inputs(processor, InputsConfig(enable_thinking=True))(samples, images=imgs, for_generation=True)


def _ids(tok, s):
    return tok.encode(s, add_special_tokens=False)


def test_budget_exceeded_appends_stop_text_and_limits_phase_two(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    a, b = _ids(tok, "a")[0], _ids(tok, "b")[0]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    # Phase 1: think forever ("a"); phase 2: answer "b" forever (never ends by itself).
    proc = Script(lambda call, row, step: a if call == 0 else b)
    stop = _ids(tok, FAMILY.chat.budget_stop_text)
    budget = 6
    total = budget + len(stop) + 7
    out = generate_with_budget(
        model, _batch(processor, 2), budget, total, tok, logits_processor=LogitsProcessorList([proc]), do_sample=False
    )
    assert proc.call == 1  # exactly two generate calls
    assert out.phase2_rows == [0, 1]
    for row in range(2):
        seq = out.sequences[row, : out.lengths[row]].tolist()
        assert seq[:budget] == [a] * budget
        assert seq[budget : budget + len(stop)] == stop
        assert tok.decode(seq[budget : budget + len(stop)]) == FAMILY.chat.budget_stop_text
        # Phase 2 used exactly the remaining allowance.
        assert seq[budget + len(stop) :] == [b] * (total - budget - len(stop))
        assert out.lengths[row] == total
        assert out.forced[row].sum() == len(stop) and out.forced[row, budget : budget + len(stop)].all()
    assert end not in out.sequences.tolist()[0]


def test_think_end_within_budget_means_no_insertion(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    a, ans = _ids(tok, "a")[0], _ids(tok, "b")[0]
    think_end = tok.convert_tokens_to_ids("</think>")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    plan = [a, a, think_end, ans, end]
    proc = Script(lambda call, row, step: plan[min(step, len(plan) - 1)])
    out = generate_with_budget(
        model, _batch(processor, 1), 20, 200, tok, logits_processor=LogitsProcessorList([proc]), do_sample=False
    )
    assert proc.call == 0  # no phase 2
    assert out.sequences[0, : out.lengths[0]].tolist() == plan
    assert not out.forced.any() and out.phase2_rows == []


def test_mixed_batch_only_unfinished_rows_continue(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    a, b = _ids(tok, "a")[0], _ids(tok, "b")[0]
    think_end = tok.convert_tokens_to_ids("</think>")
    end = tok.convert_tokens_to_ids("<|im_end|>")

    def script(call, row, step):
        if call == 0:
            if row == 0:
                return [a, think_end, b, end][min(step, 3)]  # finishes in phase 1
            if row == 1:
                return [a, think_end][min(step, 1)] if step < 2 else b  # </think> but no end
            return a  # row 2 never closes its thought
        return end  # phase 2 (rows 1 and 2 only) ends at once

    budget = 5
    proc = Script(script)
    # Through the family's contract, whose select_rows lets phase 2 run on the unfinished rows only.
    out = generate(
        FAMILY, model, _batch(processor, 3), tok, budget=budget, max_new_tokens=200,
        logits_processor=LogitsProcessorList([proc]), do_sample=False,
    )
    assert proc.batch_sizes == [3, 2]
    stop = _ids(tok, FAMILY.chat.budget_stop_text)
    seqs = [out.sequences[r, : out.lengths[r]].tolist() for r in range(3)]
    assert seqs[0] == [a, think_end, b, end]
    assert seqs[1] == [a, think_end, b, b, b, end]  # continued without insertion
    assert seqs[2] == [a] * budget + stop + [end]
    assert out.phase2_rows == [1, 2]
    assert not out.forced[1].any() and out.forced[2].sum() == len(stop)


def test_budget_leaving_no_room_is_rejected(tiny):
    model, processor = tiny
    with pytest.raises(ValueError, match="budget"):
        generate_with_budget(model, _batch(processor, 1), 10, 20, processor.tokenizer)


def test_no_budget_is_plain_generation(tiny):
    model, processor = tiny
    batch = _batch(processor, 2)
    out = generate_with_budget(model, batch, None, 6, processor.tokenizer, do_sample=False)
    ref = model.generate(**batch, max_new_tokens=6, do_sample=False)[:, batch["input_ids"].shape[1] :]
    for row in range(2):
        n = out.lengths[row]
        assert out.sequences[row, :n].tolist() == ref[row, :n].tolist()
    assert out.phase2_rows == [] and not out.forced.any()
