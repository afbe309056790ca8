"""vlm_train: distributed SFT and GRPO for InternVL3.5 and Ovis2.5 on Ray Train + DeepSpeed + TRL."""

__version__ = "0.1.0"
