"""Profile one training step of a family on GPU (top ops by CUDA and CPU time).

    python benchmarks/profile_step.py ovis2_5 --dims 1024 2048 12
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from torch.profiler import ProfilerActivity, profile

    from vlm_train.config import DataConfig, ModelConfig, SyntheticConfig
    from vlm_train.data.load import load_dataset
    from vlm_train.models import get_family

    ap = argparse.ArgumentParser()
    ap.add_argument("family")
    ap.add_argument("--dims", type=int, nargs=3, default=[1024, 2048, 12])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    fam = get_family(args.family)
    path = fam.tiny(work / "m", vision_hidden=args.dims[0], text_hidden=args.dims[1], layers=args.dims[2])
    model, proc = fam.load(ModelConfig(family=args.family, path=str(path), attn_implementation="sdpa"), dtype=torch.bfloat16)
    model.cuda().train()
    data = load_dataset(DataConfig(synthetic=SyntheticConfig(n=16, n_eval=0, image_size=448)), "train", work_dir=work / "d", family=fam)
    from vlm_train.models.base import InputsConfig
    b = fam.make_inputs(proc, InputsConfig(image_roots=tuple(data.image_roots)))(data.samples[:8])
    b = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in b.items()}
    b["pixel_values"] = b["pixel_values"].to(torch.bfloat16)
    for _ in range(3):
        model(**b).loss.backward()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            model(**b).loss.backward()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=50))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=50))


if __name__ == "__main__":
    main()
