"""SFT batching on CPU: padded (TRL's default VLM path) vs length-grouped vs packed.

    python benchmarks/packing.py [--n 48] [--families internvl ovis2_5] [--max-length 2048]

The length mix (vlm_train/testing/length_mix.py), written down:
  - 1-4 images per sample, sides uniform in 32-160 px (tile counts / patch grids vary);
  - answers log-uniform between 5 and 400 words;
  - 10% multi-turn samples with a crop tool call and its crop returned as a tool turn.

For each family, the same tiny model (random weights, fp32, sdpa) trains one epoch over the
same samples (so the same real tokens) three ways, each from the same initial weights (packed
rows attend per sample via ``sdpa_segments``, as ``sft.packing`` does on sdpa):
  - padded:  micro-batches of ``--batch`` samples in random order, right-padded
             (our collator without packing, no length grouping = TRL's default path);
  - grouped: the same, drawn by transformers' length-grouped sampler (``sft.group_by_length``);
  - packed:  ``--rows`` rows of at most ``--max-length`` tokens per micro-batch, planned by
             best-fit decreasing over ``--buffer`` samples (``sft.packing``).
Batches are built before timing (the data pipeline runs in dataloader workers in a real run;
benchmarks/data_pipeline.py measures it); the timed part is forward, backward and the AdamW
step through the trainer's own ``compute_loss``. Reported per mode: real-token fraction (real
tokens / positions computed), real tokens/s, peak RSS during the mode, ratios to padded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlm_train.config import ModelConfig  # noqa: E402
from vlm_train.data.cache import EncodingCache  # noqa: E402
from vlm_train.data.packing import PackedBatchSampler  # noqa: E402
from vlm_train.models import get_family  # noqa: E402
from vlm_train.models.base import InputsConfig  # noqa: E402
from vlm_train.testing.length_mix import length_mix  # noqa: E402
from vlm_train.testing.sft_trainer import local_sft_trainer  # noqa: E402
from vlm_train.train.collator import SFTCollator  # noqa: E402
from vlm_train.train.segment_attention import use_segment_attention  # noqa: E402


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.peak, self._stop = self._rss(), threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())


def plans(lengths: list[int], a, seed: int) -> dict[str, list[list]]:
    """Index lists per micro-batch for each mode (packed: (index, row) keys)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    grouped = list(LengthGroupedSampler(a.batch, lengths=lengths, generator=torch.Generator().manual_seed(seed)))
    chunk = lambda idx: [idx[i : i + a.batch] for i in range(0, len(idx), a.batch)]  # noqa: E731
    packed = list(PackedBatchSampler(lengths, a.max_length, a.rows, a.buffer, seed=seed))
    return {"padded": chunk(order), "grouped": chunk(grouped), "packed": packed}


def run_family(name: str, a, work: Path) -> dict[str, dict[str, float]]:
    fam = get_family(name)
    torch.manual_seed(0)
    ckpt = fam.tiny(work / name, seed=0, text_hidden=a.hidden, layers=a.layers)
    model, proc = fam.load(ModelConfig(family=name, path=str(ckpt), attn_implementation="sdpa"), dtype=torch.float32)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    samples = length_mix(work / "img", a.n, seed=a.seed)
    rows = [{"sample": s.to_json()} for s in samples]
    builder = fam.make_inputs(proc, InputsConfig(image_roots=(str(work / "img"),), max_length=a.max_length))
    cache = EncodingCache("memory")  # encode once, share between modes
    padded = SFTCollator(builder, fam.merge_visuals, max_length=a.max_length, cache=cache)
    # Packed rows attend per sample (sdpa_segments, what flash-attn varlen does on GPU); padded
    # batches run plain sdpa with their masks under the same implementation.
    use_segment_attention(model)
    packed = SFTCollator(builder, fam.merge_visuals, max_length=a.max_length, cache=cache, packed=True, varlen_kwargs=True)
    lengths = [padded.length(r) for r in rows]
    trainer = local_sft_trainer(model, proc, padded, rows, work / "out", max_length=a.max_length,
                                per_device_train_batch_size=a.batch)
    out = {}
    for mode, batches in plans(lengths, a, a.seed).items():
        col = packed if mode == "packed" else padded
        built = [col([{**rows[i], "row": r} for i, r in b] if mode == "packed" else [rows[i] for i in b]) for b in batches]
        positions = sum(b["input_ids"].numel() for b in built)
        real = sum(int(b["real_tokens"].sum()) for b in built)
        model.load_state_dict(init)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        trainer.compute_loss(model, dict(built[0])).backward()  # warm-up (allocator, kernels)
        opt.zero_grad()
        with PeakRSS() as mem:
            t = time.perf_counter()
            for b in built:
                trainer.compute_loss(model, dict(b)).backward()
                opt.step()
                opt.zero_grad()
            dt = time.perf_counter() - t
        out[mode] = {"fraction": real / positions, "tok_s": real / dt, "rss": mem.peak / 2**20, "real": real,
                     "steps": len(built), "seconds": dt}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["internvl", "ovis2_5"])
    ap.add_argument("--n", type=int, default=32, help="samples (one epoch per mode)")
    ap.add_argument("--batch", type=int, default=4, help="samples per padded micro-batch")
    ap.add_argument("--rows", type=int, default=1, help="packed rows per micro-batch")
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--buffer", type=int, default=32, help="packing buffer (samples)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"CPU, {a.threads} threads, fp32, sdpa; {a.n} samples of the length mix; padded/grouped: {a.batch} samples per "
          f"micro-batch; packed: {a.rows} row(s) of <= {a.max_length} tokens; tiny models hidden {a.hidden}, {a.layers} layers")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.families:
            res = run_family(name, a, Path(tmp))
            base = res["padded"]
            print(f"\n{name}: {base['real']} real tokens per mode")
            print(f"{'mode':>8} | {'steps':>5} | {'real-token fraction':>19} | {'tokens/s':>9} | {'x padded':>8} | {'peak RSS MiB':>12}")
            for mode, r in res.items():
                print(f"{mode:>8} | {r['steps']:>5} | {r['fraction']:>19.3f} | {r['tok_s']:>9.0f} | "
                      f"{r['tok_s'] / base['tok_s']:>7.2f}x | {r['rss']:>12.0f}")
            summary.append(f"{name}: real-token fraction {res['packed']['fraction']:.3f} packed vs {base['fraction']:.3f} "
                           f"padded; packed tokens/s {res['packed']['tok_s'] / base['tok_s']:.2f}x padded")
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
