"""GPU checks (run on a CUDA machine; never in CI): bf16 numerics, varlen attention, throughput.

    python benchmarks/gpu_check.py [--steps 20]

1. Ovis2.5 packed vision attention: the CUDA varlen kernel (flash-attn when installed, else
   torch's varlen_attn) against sdpa with a block-diagonal mask, bf16, SigLIP2-sized heads
   (16 x 72) over a pack of image segments of realistic lengths. Prints max |diff| and timings.
0. Packing at real shape: random-weight InternVL3.5-1B (InternViT-300M + Qwen3-0.6B) and
   Ovis2.5-2B (SigLIP2 NaViT + Qwen3-1.7B), bf16, on the length mix of
   benchmarks/packing.py: padded micro-batches vs packed rows (flash-attn varlen when
   installed): tokens/s and MFU with the vision tower's FLOPs counted, ratio packed/padded.
   ``--small --only-pack`` runs the same code on tiny shapes (CPU) to check it.
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


INTERNVL_1B = {  # InternVL3.5-1B: InternViT-300M-448px + Qwen3-0.6B (model card / config.json)
    "vision": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   image_size=[448, 448], patch_size=[14, 14]),
    "text": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                 intermediate_size=3072, vocab_size=151936),
}


def real_shaped(family_name: str, work: Path, small: bool = False):
    """(family, random-weight model of the real 1B/2B shape, processor). ``small``: tiny dims,
    to check the code path without a GPU."""
    from vlm_train.models import get_family

    fam = get_family(family_name)
    if family_name == "internvl":
        from transformers import AutoConfig, AutoProcessor, InternVLForConditionalGeneration

        path = fam.tiny(work / "internvl_1b", seed=0, image_size=448 if not small else 64)
        cfg = AutoConfig.from_pretrained(path)
        if not small:
            for k, v in INTERNVL_1B["vision"].items():
                setattr(cfg.vision_config, k, v)
            for k, v in INTERNVL_1B["text"].items():
                setattr(cfg.text_config, k, v)
            cfg.image_seq_length = 256
        proc = AutoProcessor.from_pretrained(path)
        proc.image_seq_length = cfg.image_seq_length
        return fam, InternVLForConditionalGeneration(cfg), proc
    import json

    from vlm_train.models.ovis2_5.config import Ovis2_5_Config
    from vlm_train.models.ovis2_5.modeling import Ovis2_5
    from vlm_train.models.ovis2_5.processor import Ovis2_5Processor

    path = fam.tiny(work / "ovis_2b", seed=0, **({} if small else {"image_size": 512, "patch_size": 16}))
    if small:
        cfg = Ovis2_5_Config.from_pretrained(path)
    else:  # Ovis2.5-2B's own config.json: SigLIP2-so400m NaViT + Qwen3-1.7B
        cfg = Ovis2_5_Config(**json.loads((REPO / "tests" / "fixtures" / "ovis2_5" / "config_2b.json").read_text()))
    return fam, Ovis2_5(cfg), Ovis2_5Processor.from_pretrained(path, max_pixels=None if small else 896 * 896)


def params(model, prefixes: list[str]) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if any(n.startswith(x) for x in prefixes))


def step_flops(fam, model, batch) -> float:
    """Useful training FLOPs of one step (fwd + bwd = 3x fwd), real tokens only: 6 x params x
    tokens for the language model (embedding lookups excluded, LM head on labelled tokens only)
    and for the vision tower + projector on their patches, plus attention: causal 6·n²·d per
    LLM layer per sample, bidirectional 12·n²·d per ViT layer per tile / frame."""
    text = model.config.get_text_config()
    head = model.get_output_embeddings().weight.numel()
    llm = params(model, fam.module_groups["llm"]) - head - model.get_input_embeddings().weight.numel()
    vis = params(model, fam.module_groups["vision"] + fam.module_groups["projector"])
    if "position_ids" in batch:  # packed: a segment per sample (positions restart at 0), then a pad tail
        lens = []
        for pos, real in zip(batch["position_ids"].tolist(), batch["real_tokens"].tolist(), strict=True):
            starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
            segs = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
            lens += segs[:-1] if real < len(pos) else segs
    else:
        lens = batch["attention_mask"].sum(1).tolist()
    tokens = sum(lens)
    labelled = int((batch["labels"] != -100).sum())
    d = text.num_attention_heads * getattr(text, "head_dim", text.hidden_size // text.num_attention_heads)
    flops = 6 * llm * tokens + 6 * head * labelled + 6 * text.num_hidden_layers * d * sum(n * n for n in lens)
    pv = batch.get("pixel_values")
    if pv is not None:
        vcfg = getattr(model.config, "vision_config", None) or model.config.vit_config
        if "grid_thws" in batch:  # Ovis2.5: patch rows, one attention segment per frame
            g = batch["grid_thws"]
            seg = (g[:, 1] * g[:, 2]).repeat_interleave(g[:, 0]).tolist()
        else:  # InternVL: tiles of (side / patch)² patches (+ class token)
            side = vcfg.image_size[0] // vcfg.patch_size[0]
            seg = [side * side + 1] * pv.shape[0]
        flops += 6 * vis * sum(seg) + 12 * vcfg.num_hidden_layers * vcfg.hidden_size * sum(n * n for n in seg)
    return float(flops)


def packed_vs_padded(family_name: str, work: Path, steps: int, peak_tflops: float, small: bool = False) -> None:
    """Real-shaped model, bf16, the length mix of benchmarks/packing.py: padded micro-batches
    of 4 samples vs packed rows (flash-attn varlen when installed): tokens/s and MFU."""
    from vlm_train.data.packing import PackedBatchSampler
    from vlm_train.models.base import InputsConfig
    from vlm_train.testing.length_mix import length_mix
    from vlm_train.testing.sft_trainer import local_sft_trainer
    from vlm_train.train.collator import SFTCollator

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    fam, model, proc = real_shaped(family_name, work, small)
    attn = "flash_attention_2" if dev == "cuda" and _has_flash_attn() else "sdpa"
    model.config._attn_implementation = attn
    model.config.get_text_config()._attn_implementation = attn
    model.to(device=dev, dtype=dtype).train()
    max_len = 512 if small else 8192
    n = 8 if small else 64
    samples = length_mix(work / f"mix_{family_name}", n, seed=0, image_sides=(32, 96) if small else (224, 896))
    rows = [{"sample": s.to_json()} for s in samples]
    builder = fam.make_inputs(proc, InputsConfig(image_roots=(str(work / f"mix_{family_name}"),), max_length=max_len))
    padded = SFTCollator(builder, fam.merge_visuals, max_length=max_len)
    packed = SFTCollator(builder, fam.merge_visuals, max_length=max_len, packed=True, varlen_kwargs=attn != "sdpa")
    lengths = [padded.length(r) for r in rows]
    trainer = local_sft_trainer(model, proc, padded, rows, work / f"out_{family_name}", max_length=max_len,
                                use_cpu=dev == "cpu", bf16=dev == "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    plans = {
        "padded": [padded([rows[j] for j in range(i, min(i + 4, n))]) for i in range(0, n, 4)],
        "packed": [packed([{**rows[i], "row": r} for i, r in b])
                   for b in PackedBatchSampler(lengths, max_len, 1, n, seed=0)],
    }
    res = {}
    for mode, batches in plans.items():
        def step(b):
            b = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in b.items()}
            if "pixel_values" in b:
                b["pixel_values"] = b["pixel_values"].to(dtype)
            trainer.compute_loss(model, b).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step(batches[0])
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        sync()
        t, tokens, flops = time.perf_counter(), 0, 0.0
        for i in range(steps):
            b = batches[i % len(batches)]
            step(b)
            tokens += int(b["real_tokens"].sum())
            flops += step_flops(fam, model, b)
        sync()
        dt = time.perf_counter() - t
        frac = sum(int(b["real_tokens"].sum()) for b in batches) / sum(b["input_ids"].numel() for b in batches)
        res[mode] = (tokens / dt, flops / dt / (peak_tflops * 1e12), frac)
        print(f"[pack] {family_name} {mode:>6} ({attn}): {res[mode][0]:>9.0f} tokens/s, MFU {100 * res[mode][1]:.1f}% "
              f"(ViT FLOPs counted), real-token fraction {frac:.3f}")
    print(f"[pack] {family_name}: packed tokens/s {res['packed'][0] / res['padded'][0]:.2f}x padded; "
          f"MFU {100 * res['packed'][1]:.1f}% vs {100 * res['padded'][1]:.1f}%")


def _has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dims", type=int, nargs=3, default=[512, 768, 8], help="vision hidden, text hidden, layers")
    ap.add_argument("--skip-attention", action="store_true")
    ap.add_argument("--pack-steps", type=int, default=10, help="steps per mode of the packed vs padded check")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200 SXM: 989)")
    ap.add_argument("--only-pack", action="store_true", help="run only the packed vs padded check")
    ap.add_argument("--small", action="store_true", help="tiny shapes (checks the code path, e.g. on CPU)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    for fam in ("internvl", "ovis2_5"):
        try:
            packed_vs_padded(fam, work, args.pack_steps, args.peak_tflops, small=args.small)
        except Exception as e:
            import traceback

            traceback.print_exc()
            print(f"[pack] {fam} FAILED: {type(e).__name__}: {e}")
    if args.only_pack:
        return
    try:
        if not args.skip_attention:
            check_attention()
    except Exception as e:  # report and go on: the throughput part is independent
        print(f"[attention] FAILED: {type(e).__name__}: {e}")
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
