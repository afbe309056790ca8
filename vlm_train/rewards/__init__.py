"""Rewards for GRPO: box and crop-call parsing (``parse``), reward functions (``functions``)."""

from vlm_train.rewards.functions import REWARDS, build_reward_funcs
from vlm_train.rewards.parse import parse_completion, parse_rollout

__all__ = ["REWARDS", "build_reward_funcs", "parse_completion", "parse_rollout"]
