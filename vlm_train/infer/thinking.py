"""Generation with a thinking budget (the model-card protocol, docs/models.md "Thinking budget"),
batched, any family: the texts come from the family's ``ChatFormat``.

Phase 1 generates at most ``budget`` tokens. A row whose phase-1 output holds the end of
turn is finished. A row that stopped without ``</think>`` gets the official stop text
appended verbatim (``chat.budget_stop_text``); every unfinished row then
continues in phase 2 from prompt + phase 1 (+ appended text) with the rest of
``max_new_tokens``. Only unfinished rows run phase 2 when the family can select rows of its
batch (``select_rows``); otherwise the whole batch runs and finished rows are ignored.

``model.generate`` must take the batch's keys and return prompt ids followed by new ids
(transformers' convention for decoder-only models; every registered family's model does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlm_train.models.chat import ChatFormat


@dataclass(frozen=True)
class BudgetProtocol:
    """The thinking-budget rule, the one implementation shared by inference (below) and GRPO
    rollouts (vlm_train/train/rollout.py): token ids of the family's turn end, ``</think>`` and
    stop text, and when the stop text is forced."""

    end_id: int
    think_end_id: int
    stop_ids: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Any, chat: ChatFormat | None = None) -> BudgetProtocol:
        chat = chat or ChatFormat()
        return cls(
            tokenizer.convert_tokens_to_ids(chat.turn_end),
            tokenizer.convert_tokens_to_ids(chat.think_close),
            tuple(tokenizer.encode(chat.budget_stop_text, add_special_tokens=False)),
        )

    @staticmethod
    def must_force(sampled: int, budget: int | None, thinking_closed: bool, ended: bool) -> bool:
        """The stop text is appended once ``budget`` sampled tokens have not closed the thought
        and the turn has not ended."""
        return bool(budget) and not ended and not thinking_closed and sampled >= budget  # type: ignore[operator]


@dataclass
class BudgetOutput:
    """Completions of one batch (prompt excluded).

    Attributes:
        sequences: [B, L] completion ids, right padded with the pad id.
        forced: [B, L] True at the appended stop-text tokens (not sampled by the model).
        lengths: real length of each row.
        phase2_rows: rows that ran phase 2.
    """

    sequences: torch.Tensor
    forced: torch.Tensor
    lengths: list[int]
    phase2_rows: list[int]


def _trim(tokens: list[int], end_id: int, pad_id: int | None) -> tuple[list[int], bool]:
    """Cut after the first end-of-turn (kept) or at the first pad (dropped: generate pads rows
    that stopped on another eos id). Returns (tokens, stopped)."""
    for i, t in enumerate(tokens):
        if t == end_id:
            return tokens[: i + 1], True
        if t == pad_id:
            return tokens[:i], True
    return tokens, False


def _left_pad(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long, device=device)
            mask[i, width - len(r) :] = 1
    return ids, mask


def generate_with_budget(
    model: Any,
    inputs: dict[str, Any],
    budget: int | None,
    max_new_tokens: int,
    tokenizer: Any,
    *,
    select_rows: Callable[[dict[str, Any], Sequence[int]], dict[str, Any]] | None = None,
    chat: ChatFormat | None = None,
    **gen_kwargs: Any,
) -> BudgetOutput:
    """Generate with a thinking budget.

    Args:
        model: a model whose ``generate`` takes ``inputs`` (left padded) and returns prompt + new ids.
        inputs: the family's generation batch (``input_ids``, ``attention_mask``, pixel tensors).
        budget: phase-1 token budget; None or >= max_new_tokens means plain generation.
        max_new_tokens: total allowance for the completion, appended text included.
        tokenizer: encodes the stop text; provides the pad, end-of-turn and ``</think>`` ids.
        select_rows: (batch, rows) -> sub-batch; lets phase 2 run only unfinished rows.
        chat: the family's chat format (turn end, ``</think>``, the stop text); None: the
            default ``ChatFormat``.
        **gen_kwargs: passed to every ``generate`` call (sampling settings, logits processors).

    Returns:
        ``BudgetOutput`` with phase 1 + appended text + phase 2 per row.
    """
    pad_id = tokenizer.pad_token_id
    proto = BudgetProtocol.of(tokenizer, chat)
    end_id, forced_ids = proto.end_id, list(proto.stop_ids)
    plain = budget is None or budget >= max_new_tokens
    if not plain and max_new_tokens <= budget + len(forced_ids):
        raise ValueError(
            f"max_new_tokens {max_new_tokens} leaves no room after a budget of {budget} and the "
            f"{len(forced_ids)}-token stop text; the official README asks for max_new_tokens > budget + 25"
        )
    ids = inputs["input_ids"]
    prompt_len = ids.shape[1]
    out1 = model.generate(**inputs, max_new_tokens=max_new_tokens if plain else budget, **gen_kwargs)
    new1 = out1[:, prompt_len:].tolist()

    completions: list[list[int]] = []
    forced: list[list[bool]] = []
    pending: list[int] = []
    for row, toks in enumerate(new1):
        toks, stopped = _trim(toks, end_id, pad_id)
        completions.append(toks)
        forced.append([False] * len(toks))
        if plain or stopped:
            continue
        # Phase 1 ran to its cap (not stopped): the budget is spent whatever was trimmed.
        if proto.must_force(budget, budget, proto.think_end_id in toks, stopped):
            completions[row] = toks + forced_ids
            forced[row] = forced[row] + [True] * len(forced_ids)
        pending.append(row)

    if pending:
        batch = select_rows(inputs, pending) if select_rows is not None else inputs
        run_rows = pending if select_rows is not None else list(range(ids.shape[0]))
        mask = batch["attention_mask"]
        seqs = []
        for j, row in enumerate(run_rows):
            prompt = batch["input_ids"][j][mask[j].bool()].tolist()
            seqs.append(prompt + completions[row])
        ids2, mask2 = _left_pad(seqs, pad_id, ids.device)
        batch2 = {**batch, "input_ids": ids2, "attention_mask": mask2}
        allowance = {row: max_new_tokens - len(completions[row]) for row in pending}
        out2 = model.generate(**batch2, max_new_tokens=max(allowance.values()), **gen_kwargs)
        new2 = out2[:, ids2.shape[1] :].tolist()
        for j, row in enumerate(run_rows):
            if row not in allowance:
                continue
            toks, _ = _trim(new2[j][: allowance[row]], end_id, pad_id)
            completions[row] += toks
            forced[row] += [False] * len(toks)

    lengths = [len(c) for c in completions]
    width = max(lengths) if lengths else 0
    seq = torch.full((len(completions), width), pad_id, dtype=torch.long)
    fmask = torch.zeros((len(completions), width), dtype=torch.bool)
    for i, (c, f) in enumerate(zip(completions, forced, strict=True)):
        seq[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        fmask[i, : len(f)] = torch.tensor(f, dtype=torch.bool)
    return BudgetOutput(seq, fmask, lengths, pending)


def generate(family: Any, model: Any, inputs: dict[str, Any], tokenizer: Any, *, budget: int | None,
             max_new_tokens: int, **gen_kwargs: Any) -> BudgetOutput:
    """``generate_with_budget`` with the family's chat format and row selection."""
    return generate_with_budget(
        model, inputs, budget, max_new_tokens, tokenizer, select_rows=family.select_rows, chat=family.chat, **gen_kwargs
    )
