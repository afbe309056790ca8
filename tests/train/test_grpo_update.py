"""GRPO moves the policy towards higher reward: after updates on one batch of crop-tool rollouts,
completions with positive advantage became more likely and those with negative advantage less
(the advantage-weighted change of sequence log-probability is positive).

This checks, in one process and without Ray, everything the custom rollout and scoring forward
must get right for learning to happen: row lookup of pixels, the logits/target alignment, the
tool-turn mask and the sign of the update. (A reward curve over a few CPU steps is dominated by
sampling noise; benchmarks/learning.py measures reward and accuracy across seeds.)
"""

from __future__ import annotations

import pytest
import torch

from vlm_train.config import ModelConfig, ToolsConfig
from vlm_train.data.load import load_dataset
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig


@pytest.mark.parametrize("family_name", ["internvl", "ovis2_5"])
def test_grpo_update_raises_advantage_weighted_logprob(family_name, tmp_path, monkeypatch):
    from datasets import Dataset
    from trl import GRPOConfig

    from vlm_train.config import DataConfig, SyntheticConfig
    from vlm_train.train.grpo import VLMGRPOTrainer, grpo_rows, wrap_reward
    from vlm_train.train.rollout import CropToolRollout

    # A single-process "distributed" world for accelerate.
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}.items():
        monkeypatch.setenv(k, v)
    torch.manual_seed(0)
    fam = get_family(family_name)
    path = fam.tiny(tmp_path / "tiny")
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], per_device_train_batch_size=8,
        num_generations=8, max_completion_length=24, learning_rate=2e-4, max_steps=4, num_iterations=4,
        beta=0.0, temperature=1.0, logging_steps=1, save_strategy="no", seed=0,
    )
    model, proc = fam.load(ModelConfig(family=family_name, path=str(path)), dtype=torch.float32)
    data = load_dataset(DataConfig(synthetic=SyntheticConfig(n=1, n_eval=0, max_shapes=1)), "train",
                        work_dir=tmp_path / "data", family=fam)
    builder = fam.make_inputs(proc, InputsConfig(image_roots=tuple(data.image_roots)))
    rollout = CropToolRollout(fam, proc, builder, ToolsConfig(max_calls=1), data.image_roots)
    # An untrained model never writes a box, so the grounding rewards are all 0 for it; a reward
    # its random samples do differ in (share of digit characters) exercises the same machinery.
    def digits(completions, **kw):
        texts = ["".join(m["content"] for m in c if m["role"] == "assistant") for c in completions]
        return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]

    args.reward_weights = [1.0]
    trainer = VLMGRPOTrainer(
        model=model, reward_funcs=[wrap_reward(digits)], args=args,
        train_dataset=Dataset.from_list(grpo_rows(data.samples, fam.coords)), processing_class=proc, rollout=rollout,
    )
    captured = {}
    original = trainer._generate_and_score_completions

    def capture(inputs):
        out = original(inputs)
        if not captured:
            captured.update(out)
            captured["rows"] = list(trainer._rows)
        return out

    monkeypatch.setattr(trainer, "_generate_and_score_completions", capture)
    trainer.train()

    # The step profile: every logged step splits its time into rollout / score / update, and the
    # 8 rollouts (prompt x num_generations) of a generation batch share batched generate calls,
    # one per tool-turn round (max_calls=1: at most 2), never one per rollout.
    logs = [e for e in trainer.state.log_history if "perf/update_s" in e]
    assert logs and all(e["perf/update_s"] > 0 for e in logs)
    gen_logs = [e for e in logs if e.get("perf/rollout_s", 0) > 0]
    assert gen_logs and all(e["perf/score_s"] > 0 and e["perf/tokens_generated_per_s"] > 0 for e in gen_logs)
    assert all(1 <= e["perf/generate_calls"] <= 2 for e in gen_logs)
    for e in logs:
        assert abs(e["perf/rollout_share"] + e["perf/score_share"] + e["perf/update_share"] - 1) < 1e-6

    adv = captured["advantages"]
    assert (adv != 0).any(), "the rollouts' rewards did not differ; the test would be vacuous"
    ids = torch.cat([captured["prompt_ids"], captured["completion_ids"]], 1)
    mask = torch.cat([captured["prompt_mask"], captured["completion_mask"]], 1)
    keep = captured["completion_ids"].size(1)
    loss_mask = captured["completion_mask"] * captured.get("tool_mask", torch.ones_like(captured["completion_mask"]))
    trainer._rows = captured["rows"]
    with torch.no_grad():
        new, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep)
    old = captured["old_per_token_logps"]
    delta = ((new - old) * loss_mask).sum(1)
    assert float((adv * delta).sum()) > 0, (adv, delta)
