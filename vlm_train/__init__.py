"""vlm_train: distributed SFT and GRPO for InternVL3.5 and Ovis2.5 on Ray Train + DeepSpeed + TRL."""

__version__ = "0.1.0"

# Ovis2.5 has no transformers class: register ours with the Auto classes. This only installs an
# import hook (no torch/transformers import here); registration happens when transformers'
# auto modules load, so `AutoModelForCausalLM.from_pretrained(ovis_dir)` works after `import vlm_train`.
from vlm_train.models.ovis2_5.hf_register import install as _install_ovis2_5

_install_ovis2_5()
del _install_ovis2_5
