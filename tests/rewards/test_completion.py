"""Completion shapes TRL passes to reward functions -> assistant texts and structured calls."""

from __future__ import annotations

import pytest

from vlm_train.rewards.completion import rollout_parts

CALL = {"type": "function", "function": {"name": "crop", "arguments": {"bbox_2d": [1, 2, 3, 4]}}}


@pytest.mark.parametrize(
    ("completion", "texts", "calls"),
    [
        ("plain text", ["plain text"], []),
        ([{"role": "assistant", "content": "hi"}], ["hi"], []),
        ({"role": "assistant", "content": "one dict"}, ["one dict"], []),
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}],
                }
            ],
            ["ab"],
            [],
        ),
        (
            [
                {"role": "assistant", "content": "<think>zoom", "tool_calls": [CALL]},
                {"role": "tool", "name": "crop", "content": [{"type": "image"}, {"type": "text", "text": "tool text"}]},
                {"role": "assistant", "content": "</think>answer"},
            ],
            ["<think>zoom", "</think>answer"],
            [CALL],
        ),
        ([{"role": "user", "content": "not the policy's"}], [""], []),
        ([{"content": "no role means assistant"}], ["no role means assistant"], []),
        (None, [""], []),
        (12, [""], []),
        ([{"role": "assistant", "content": None, "tool_calls": "not a list"}], [""], []),
    ],
)
def test_rollout_parts(completion, texts, calls):
    assert rollout_parts(completion) == (texts, calls)
