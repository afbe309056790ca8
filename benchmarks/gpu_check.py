"""GPU checks (run on a CUDA machine; never in CI): bf16 numerics, varlen attention, throughput.

    python benchmarks/gpu_check.py [--steps 20]

1. Ovis2.5 packed vision attention: the CUDA varlen kernel (flash-attn when installed, else
   torch's varlen_attn) against sdpa with a block-diagonal mask, bf16, SigLIP2-sized heads
   (16 x 72) over a pack of image segments of realistic lengths. Prints max |diff| and timings.
2. A ~100M-parameter random InternVL3.5-shaped model (native transformers class) and an
   Ovis2.5-shaped one, trained with this project's input builders on synthetic grounding
   data: tokens/s for fp32 vs bf16 (sdpa) on the same GPU, and the loss after N steps.
Figures are printed as ratios against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def check_attention() -> None:
    from vlm_train.models.ovis2_5 import attention as att

    torch.manual_seed(0)
    lens = [196, 3136, 1024, 64, 784]  # 448², 1792², 896², a small crop, 8 video-ish frames of 98
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device="cuda")
    total = int(cu[-1])
    q, k, v = (torch.randn(total, 16, 72, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref = att.sdpa_packed(q.float(), k.float(), v.float(), cu)
    var = att.varlen_packed(q, k, v, cu)
    sd = att.sdpa_packed(q, k, v, cu)
    print(f"[attention] backend: {'flash-attn' if att._HAS_FLASH_ATTN else 'torch varlen_attn'}; tokens {total}")
    print(f"[attention] max|varlen_bf16 - sdpa_fp32| = {(var.float() - ref).abs().max().item():.4f}; "
          f"max|sdpa_bf16 - sdpa_fp32| = {(sd.float() - ref).abs().max().item():.4f}")
    t_var, t_sdpa = timed(lambda: att.varlen_packed(q, k, v, cu)), timed(lambda: att.sdpa_packed(q, k, v, cu))
    print(f"[attention] varlen {t_var * 1e3:.2f} ms vs sdpa+block mask {t_sdpa * 1e3:.2f} ms: {t_sdpa / t_var:.1f}x faster")


def train_throughput(family_name: str, steps: int, dtype: torch.dtype, work: Path, dims=(512, 768, 8)) -> tuple[float, float]:
    from vlm_train.config import DataConfig, ModelConfig, SyntheticConfig
    from vlm_train.data.load import load_dataset
    from vlm_train.models import get_family

    fam = get_family(family_name)
    path = work / f"{family_name}_model"
    if not (path / "config.json").exists():
        fam.tiny(path, seed=0, image_size=448 if family_name == "internvl" else 64,
                 vision_hidden=dims[0], text_hidden=dims[1], layers=dims[2])
    model, proc = fam.load(ModelConfig(family=family_name, path=str(path), attn_implementation="sdpa"), dtype=dtype)
    model.cuda().train()
    data = load_dataset(DataConfig(synthetic=SyntheticConfig(n=64, n_eval=0, image_size=448)), "train",
                        work_dir=work / f"{family_name}_data", family=fam)
    from vlm_train.models.base import InputsConfig
    build = fam.make_inputs(proc, InputsConfig(image_roots=tuple(data.image_roots)))
    batches = [build(data.samples[i : i + 8]) for i in range(0, 64, 8)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n_params = sum(p.numel() for p in model.parameters())

    def step(b):
        b = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in b.items()}
        if "pixel_values" in b:
            b["pixel_values"] = b["pixel_values"].to(dtype)
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss, int(b["attention_mask"].sum())

    step(batches[0])
    torch.cuda.synchronize()
    t, tokens = time.perf_counter(), 0
    for i in range(steps):
        loss, n = step(batches[i % len(batches)])
        tokens += n
    torch.cuda.synchronize()
    tps = tokens / (time.perf_counter() - t)
    print(f"[train] {family_name} {n_params / 1e6:.0f}M params {str(dtype):<14} {tps:>10.0f} tokens/s  loss {loss.item():.3f}")
    return tps, float(loss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dims", type=int, nargs=3, default=[512, 768, 8], help="vision hidden, text hidden, layers")
    ap.add_argument("--skip-attention", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    try:
        if not args.skip_attention:
            check_attention()
    except Exception as e:  # report and go on: the throughput part is independent
        print(f"[attention] FAILED: {type(e).__name__}: {e}")
    work = Path(tempfile.mkdtemp())
    for fam in ("internvl", "ovis2_5"):
        try:
            base, _ = train_throughput(fam, args.steps, torch.float32, work, tuple(args.dims))
            fast, _ = train_throughput(fam, args.steps, torch.bfloat16, work, tuple(args.dims))
            print(f"[train] {fam}: bf16 / fp32 throughput = {fast / base:.2f}x")
        except Exception as e:
            import traceback

            traceback.print_exc()
            print(f"[train] {fam} FAILED: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
