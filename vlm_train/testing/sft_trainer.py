"""A one-process VLMSFTTrainer (no Ray, no DeepSpeed; CPU unless ``use_cpu=False``), for tests
and benchmarks that need the trainer's own loss and token accounting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_SINGLE_PROCESS = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}


def local_sft_trainer(model: Any, processor: Any, collator: Any, rows: list[dict], out_dir: str | Path,
                      options: Any = None, port: int = 29541, **args: Any):
    """VLMSFTTrainer over ``rows`` ({"sample": json}); ``args`` go to SFTConfig."""
    from datasets import Dataset
    from trl import SFTConfig

    from vlm_train.train.sft_options import SFTOptions
    from vlm_train.train.sft_trainer import VLMSFTTrainer

    for k, v in {**_SINGLE_PROCESS, "MASTER_PORT": str(port)}.items():
        os.environ.setdefault(k, v)
    kw = dict(use_cpu=True, bf16=False, report_to=[], dataset_kwargs={"skip_prepare_dataset": True},
              remove_unused_columns=False, include_num_input_tokens_seen="non_padding", save_strategy="no")
    config = SFTConfig(output_dir=str(out_dir), **{**kw, **args})
    return VLMSFTTrainer(options=options or SFTOptions(), model=model, args=config, train_dataset=Dataset.from_list(rows),
                         data_collator=collator, processing_class=processor)
