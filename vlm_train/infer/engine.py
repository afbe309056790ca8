"""One loaded model answering batches of prompts, the crop tool executed live.

Generation goes through ``CropToolRollout`` (vlm_train/train/rollout.py), the code GRPO
rollouts use: it stops at a crop call, appends the crop of the original image as a tool turn,
continues (at most ``tools.max_calls`` calls), and applies the thinking budget. Inference is
greedy unless ``infer.do_sample``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from vlm_train.config import JobConfig
from vlm_train.data.sample import Sample
from vlm_train.infer.source import load, resolve
from vlm_train.models.base import InputsConfig
from vlm_train.rewards.parse import parse_completion


class PromptTooLong(ValueError):
    pass


def split_thinking(text: str, open_tag: str = "<think>", close_tag: str = "</think>") -> tuple[str, str]:
    """(thinking, answer) of a completion: the text inside the think block, and what follows it
    (a thought never closed is all thinking, no answer)."""
    if close_tag not in text:
        if open_tag in text:
            return text.split(open_tag, 1)[1].strip(), ""
        return "", text.strip()
    head, _, tail = text.rpartition(close_tag)
    return head.split(open_tag, 1)[-1].strip(), tail.strip()


class Engine:
    """Loads ``cfg.model.path`` (any source ``vlm_train.infer.source`` resolves) once."""

    def __init__(self, cfg: JobConfig, image_roots: list[str]):
        self.cfg, self.inf, self.image_roots = cfg, cfg.infer, list(image_roots)
        src = resolve(cfg.model.path)
        self.family = src.family
        self.model, self.processor = load(src, dtype=cfg.model.dtype)
        if torch.cuda.is_available():
            self.model = self.model.cuda()
        self.tok = self.processor.tokenizer
        self.context = self.model.config.get_text_config().max_position_embeddings

    def rollout(self, thinking: bool, budget: int | None, image_roots: list[str] | None = None) -> Any:
        """The GRPO rollout object for these settings (cheap: it wraps the loaded processor)."""
        from vlm_train.train.rollout import CropToolRollout

        roots = image_roots if image_roots is not None else self.image_roots
        builder = make_builder(self.family, self.processor, self.cfg, roots, thinking, self.context)
        tools = replace(self.cfg.tools, max_calls=self.cfg.tools.max_calls if self.inf.tools else 0,
                        thinking_budget=budget if thinking else None)
        return CropToolRollout(self.family, self.processor, builder, tools, roots,
                               max_pixels=self.cfg.data.max_image_pixels, enable_thinking=thinking)

    def generation_kwargs(self) -> dict[str, Any]:
        if self.inf.do_sample:
            return {"do_sample": True, "temperature": self.inf.temperature, "top_p": self.inf.top_p}
        return {"do_sample": False, "num_beams": 1}

    def __call__(self, samples: list[Sample], thinking: bool | None = None, budget: int | None = None,
                 image_roots: list[str] | None = None, streamer: Any = None) -> list[dict[str, Any]]:
        """One record per sample (see vlm_train/infer/run.py for the fields). ``thinking`` /
        ``budget`` default to the config's; ``streamer`` (a transformers streamer) sees every
        generated token as it comes."""
        thinking = self.inf.thinking if thinking is None else thinking
        budget = self.inf.thinking_budget if budget is None else budget
        rollout = self.rollout(thinking, budget, image_roots)
        t0 = time.perf_counter()
        rows = []
        for s in samples:
            row = rollout.start(s)
            if len(row.prompt_ids) >= self.context:
                where = f"{s.meta.get('source', '?')}:{s.meta.get('line', '?')}"
                raise PromptTooLong(f"{where}: prompt {s.id!r} is {len(row.prompt_ids)} tokens, the model's context is {self.context}")
            rows.append(row)
        # max_new_tokens counts what the model writes (as GRPO's completion budget); the context
        # bounds every token after the prompt, tool turns included.
        room = self.context - max(len(r.prompt_ids) for r in rows)
        gen = self.generation_kwargs() | ({"streamer": streamer} if streamer is not None else {})
        rollout.generate(self.model, rows, gen, self.inf.max_new_tokens, max_total=room)
        seconds = (time.perf_counter() - t0) / len(rows)
        return [self.record(r, seconds) for r in rows]

    def record(self, row: Any, seconds: float) -> dict[str, Any]:
        chat = self.family.chat
        text = chat.strip_completion("".join(row.text))
        thinking, answer = split_thinking(text, chat.think_open, chat.think_close)
        s = row.sample
        size = s.image_sizes[0] if s.image_sizes else None
        parsed = parse_completion(answer, size, coords=self.family.coords.name) if size else None
        boxes = [{"pixels": [round(v, 2) for v in b.box.as_list()], "text": self.family.box_to_text(b.box, *size)}
                 for b in (parsed.answer_boxes if parsed else [])]
        calls_parsed = parse_completion(text, size, coords=self.family.coords.name).tool_calls if size else []
        calls = [{"text": c.text, "box": [round(v, 2) for v in c.box.box.as_list()] if c.box else None,
                  "executed": i < row.calls} for i, c in enumerate(calls_parsed)]
        rec = {"id": s.id, "response": text, "thinking": thinking, "answer": answer, "answer_boxes": boxes,
               "tool_calls": calls, "tokens": row.sampled, "seconds": round(seconds, 4)}
        rec["_crops"] = list(row.crops)  # PIL crops, for the demo; run.py drops them
        return rec

def make_builder(family: Any, processor: Any, cfg: JobConfig, image_roots: list[str], thinking: bool, context: int) -> Any:
    """The family's input builder; prompts are cut at the model's context at most, so a longer one
    reaches the engine's length check instead of being shortened silently."""
    return family.make_inputs(processor, InputsConfig.from_job(cfg, image_roots, context, enable_thinking=thinking))
