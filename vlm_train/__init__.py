"""vlm_train: distributed SFT and GRPO of vision-language models (one folder per family under
``vlm_train/models/``) on Ray Train + DeepSpeed + TRL."""

__version__ = "0.1.0"

# Families transformers does not ship register with its Auto classes (vlm_train/models/__init__.py).
from vlm_train.models import install_hf_auto as _install_hf_auto

_install_hf_auto()
del _install_hf_auto
