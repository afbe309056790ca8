"""Worker side of a stage: its environment (worker), trainer arguments (args), the model
(model), its rows (dataset), the TRL trainers (sft, grpo) with their callbacks, the shared
resume/train/finish tail (loop) and final-model saving (final)."""
