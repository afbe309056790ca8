"""Rollouts with the crop tool executed live, for any family (through its InputBuilder).

A rollout generates until the model closes a crop call (``</tool_call>``) or ends its turn.
On a call, the crop of the ORIGINAL image at the called box is made, appended as a tool
turn (the family's turn end + its tool-response rendering with the crop as an image +
the assistant header), and generation continues; at most ``tools.max_calls`` calls.
``grpo.max_completion_length`` bounds the tokens the policy writes; the tool turns come on
top of it (at most ``max_calls`` of them). Counted in, a crop's image tokens would eat the
answer's budget: at the quick start's 64, the call and one crop turn left 6 tokens, and every
rollout that cropped ended before its answer (no IoU reward for any crop).

What the trainer gets per row: exact token ids (prompt, then completion = generated tokens
interleaved with tool-turn tokens), a mask that is 0 on tool-turn tokens (no policy loss on
them), the multimodal tensors of every image the row's forward needs (prompt images, then
crops, in placeholder order), and the generated text alone (for rewards).

Nothing here branches on family names: placeholders, tool-turn rendering and pixel tensors
all come from the family's InputBuilder.

Under ZeRO-3 on several ranks ``generate`` is a collective: transformers runs it with
``synced_gpus``, all-reducing after every step whether each rank has finished (and, with the
parameters left sharded, gathering them layer by layer). The rounds of a rollout differ by rank
(one rank's rows call the crop tool, another's do not), so a rank whose rows are done keeps
joining the others' rounds with a throwaway call until no rank has rows left; otherwise the
busier rank waits forever in its extra round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from vlm_train.data.media import load_image
from vlm_train.data.sample import Box, Message, Part, Sample, prompt_messages
from vlm_train.infer.thinking import BudgetProtocol
from vlm_train.models.base import Family
from vlm_train.rewards.parse import parse_completion
from vlm_train.tools.crop import crop


@dataclass(eq=False)  # a row is one rollout: compared by identity (its fields hold tensors)
class Row:
    """One rollout in progress."""

    sample: Sample
    prompt_ids: list[int]
    mm: list[dict[str, torch.Tensor]]  # per image, in placeholder order
    original: Any  # PIL image the crop tool cuts from
    completion_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)  # 1 generated, 0 tool turn
    text: list[str] = field(default_factory=list)  # generated segments
    calls: int = 0
    crops: list[Any] = field(default_factory=list)
    done: bool = False
    sampled: int = 0  # tokens the policy generated (the thinking budget counts these)
    thinking_closed: bool = False  # </think> written, or forced by the budget
    tool_tokens: int = 0  # of completion_ids, those of tool turns

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    @property
    def written(self) -> int:
        """Completion tokens that count against ``max_completion``: all but the tool turns'."""
        return len(self.completion_ids) - self.tool_tokens


def split_batch(batch: dict[str, Any], row: int = 0) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Unpadded ids of ``row`` and the multimodal tensors of a one-sample batch."""
    ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
    mm = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels") and torch.is_tensor(v)}
    return ids, mm


def merge_mm(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-image tensors in order (pixel rows/tiles and, e.g. for a native-resolution
    family, grid rows)."""
    keys = {k for p in parts for k in p}
    return {k: torch.cat([p[k] for p in parts if k in p]) for k in sorted(keys)}


def prompt_sample(sample: Sample) -> Sample:
    """The sample without its final answer (see ``prompt_messages``)."""
    return dataclasses.replace(sample, messages=prompt_messages(sample.messages))


class CropToolRollout:
    """Generates completions for a batch of canonical samples, executing crop calls live."""

    def __init__(
        self, family: Family, processor: Any, builder: Any, tools_cfg: Any, image_roots: list[str],
        coords: str | None = None, max_pixels: int = 64_000_000, enable_thinking: bool = False,
    ):
        """``coords``: convention of the crop calls' JSON boxes; None: the family's own.
        ``max_pixels``: data.max_image_pixels; it bounds the original, and so every crop of it.
        ``enable_thinking``: the assistant header after a tool turn leaves thinking open (as the
        prompt's does), instead of the empty think block some families write when it is off."""
        self.family, self.processor, self.builder = family, processor, builder
        self.tok = processor.tokenizer
        self.tools_cfg, self.image_roots = tools_cfg, image_roots
        self.coords = coords or family.coords.name
        self.max_pixels = max_pixels
        chat = family.chat
        self.im_end = self.tok.convert_tokens_to_ids(chat.turn_end)
        self.call_end = self._single_token(chat.tool_call_close)
        self.pad = self.tok.pad_token_id
        self.close_ids = self.tok(chat.turn_end + "\n", add_special_tokens=False)["input_ids"]
        # The text opening the next assistant turn after a tool turn (with thinking off a family
        # may add its empty think block, as its generation prompt does).
        self.header_ids = self.tok(chat.assistant_header(enable_thinking), add_special_tokens=False)["input_ids"]
        self.suppress = [t for t in family.suppress_token_ids(processor) if t is not None and t >= 0]
        # Thinking budget (the protocol of vlm_train/infer/thinking.py, the same for every
        # family): once a rollout has sampled this many tokens without closing the thought,
        # the family's stop text is appended (not sampled: no policy loss) and generation
        # continues with the remaining allowance.
        self.thinking_budget = getattr(tools_cfg, "thinking_budget", None)
        self.budget = BudgetProtocol.of(self.tok, chat)
        self.budget_ids = list(self.budget.stop_ids)

    def _single_token(self, s: str) -> int | None:
        ids = self.tok(s, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None

    # ---- building rows -----------------------------------------------------------------
    def start(self, sample: Sample) -> Row:
        ps = prompt_sample(sample)
        ids, mm = split_batch(self.builder([ps], for_generation=True))
        # The crop tool crops the first image; a prompt without one (video, text) has nothing to crop.
        first = next((p.media for m in ps.messages for p in m.content if p.type == "image"), None)
        # data.max_image_pixels bounds the original, and so every crop of it.
        original = load_image(first, self.image_roots, self.max_pixels) if first is not None else None
        return Row(sample=sample, prompt_ids=ids, mm=[mm] if mm else [], original=original)

    def tool_turn(self, row: Row, box: Box) -> tuple[list[int], dict[str, torch.Tensor], Any]:
        """Token ids (closing the assistant turn, the tool turn, the next assistant header) and pixels."""
        image = crop(row.original, box, self.tools_cfg.min_crop_size)
        turn = Sample(id=f"{row.sample.id}-tool{row.calls}", messages=[Message("tool", [Part("tool_response", media="<crop>")])])
        ids, mm = split_batch(self.builder([turn], images=[[image]]))
        return self.close_ids + ids + self.header_ids, mm, image

    # ---- generation --------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, model: Any, rows: list[Row], gen: dict[str, Any], max_completion: int,
                 max_total: int | None = None) -> int:
        """Complete every row in place; returns the number of batched ``generate`` calls.

        ``max_completion`` bounds the tokens each row writes; ``max_total``, if given, every
        token after the prompt, tool turns included (what the model's context has room for).

        All unfinished rows (every prompt x generation of the step) go into each call
        together; a call ends where rows stop at a crop call, so the number of calls is one
        per tool-turn round (plus any thinking-budget split), not one per row. In lock-step
        (see the module docstring) every rank makes as many calls as the busiest one.
        """
        active = [r for r in rows if not r.done]
        n_calls = 0
        device = next(model.parameters()).device
        lockstep = in_lockstep()
        while any_rank(bool(active), device) if lockstep else active:
            n_calls += 1
            if not active:  # this rank is done, another still generates: join its round
                self._idle_call(model, rows[0], device)
                continue
            budget = max(1, min(self._room(r, max_completion, max_total) for r in active))
            thinking = [r for r in active if self.thinking_budget and not r.thinking_closed]
            if thinking:  # stop this call where the first thinking row reaches its budget
                budget = min(budget, max(1, min(self.thinking_budget - r.sampled for r in thinking)))
            width = max(len(r.ids) for r in active)
            ids = torch.full((len(active), width), self.pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(active):  # left padding: new tokens append on the right
                ids[i, width - len(r.ids):] = torch.tensor(r.ids)
                mask[i, width - len(r.ids):] = 1
            mm = merge_mm([m for r in active for m in r.mm])
            stop = [self.im_end] + ([self.call_end] if self.call_end is not None else [])
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                **{k: v.to(device) for k, v in mm.items()},
                max_new_tokens=budget,
                eos_token_id=stop,
                pad_token_id=self.pad,
                suppress_tokens=self.suppress or None,
                synced_gpus=lockstep,
                **gen,
            )
            new = out[:, width:].tolist()
            nxt = []
            for r, raw in zip(active, new, strict=True):
                toks = _until_stop(raw, stop, self.pad)
                r.completion_ids += toks
                r.mask += [1] * len(toks)
                r.sampled += len(toks)
                text = self.tok.decode(toks, skip_special_tokens=False)
                r.text.append(text)
                if self.family.chat.think_close in text:
                    r.thinking_closed = True
                room = self._room(r, max_completion, max_total)
                stopped = bool(toks) and toks[-1] in stop
                # The model chose the pad token (an untrained one may, first): its text ends
                # there. Sent back, a greedy row would choose it again and never finish.
                padded = not stopped and len(toks) < len(raw)
                if not stopped and not padded and room > 0:  # cut by this call's cap, not finished
                    if self.budget.must_force(r.sampled, self.thinking_budget, r.thinking_closed, stopped):
                        forced = self.budget_ids[:room]
                        r.completion_ids += forced
                        r.mask += [0] * len(forced)
                        r.text.append(self.tok.decode(forced, skip_special_tokens=False))
                        r.thinking_closed = True
                    nxt.append(r)
                    continue
                if (toks and toks[-1] == self.call_end and r.calls < self.tools_cfg.max_calls and room > 0
                        and r.original is not None):
                    box = self._called_box(r, text)
                    if box is not None:
                        turn_ids, turn_mm, image = self.tool_turn(r, box)
                        r.completion_ids += turn_ids
                        r.tool_tokens += len(turn_ids)
                        r.mask += [0] * len(turn_ids)
                        r.mm.append(turn_mm)
                        r.crops.append(image)
                        r.calls += 1
                        nxt.append(r)
                        continue
                r.done = True
            active = [r for r in nxt if self._room(r, max_completion, max_total) > 0]
            for r in nxt:
                if r not in active:
                    r.done = True
        return n_calls

    @staticmethod
    def _room(row: Row, max_completion: int, max_total: int | None) -> int:
        """Tokens ``row`` may still write."""
        room = max_completion - row.written
        return room if max_total is None else min(room, max_total - len(row.completion_ids))

    def _idle_call(self, model: Any, row: Row, device: Any) -> None:
        """One throwaway greedy token from ``row``'s prompt, so this rank takes part in a
        lock-step round it has nothing for (``synced_gpus`` keeps it stepping with the others)."""
        ids = torch.tensor([row.prompt_ids], dtype=torch.long, device=device)
        mm = row.mm[0] if row.mm else {}
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **{k: v.to(device) for k, v in mm.items()},
                       max_new_tokens=1, eos_token_id=[self.im_end], pad_token_id=self.pad, do_sample=False,
                       synced_gpus=True)

    def _called_box(self, row: Row, text: str) -> Box | None:
        w, h = row.original.size
        parsed = parse_completion(text, (w, h), coords=self.coords)
        calls = [c for c in parsed.tool_calls if c.box is not None and c.well_formed]
        return calls[-1].box.box if calls else None


def in_lockstep() -> bool:
    """Whether ``generate`` is a collective here: ZeRO-3 with more than one rank."""
    import torch.distributed as dist
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_rank(mine: bool, device: Any) -> bool:
    """Whether any rank has rows left (every rank calls this once per round)."""
    import torch.distributed as dist

    flag = torch.tensor([int(mine)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _until_stop(toks: list[int], stop: list[int], pad: int) -> list[int]:
    out = []
    for t in toks:
        if t == pad and t not in stop:
            break
        out.append(t)
        if t in stop:
            break
    return out
