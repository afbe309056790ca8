"""The data pipeline off the training process: dataloader settings (pool defaults, user
overrides), our sft: keys taken out before TRL, the collator in worker processes, the input
cache (epoch 2 builds nothing), length measurement and length grouping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from vlm_train.config import load_config
from vlm_train.config_base import ConfigError
from vlm_train.data.cache import EncodingCache
from vlm_train.data.sample import Sample
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.testing.length_mix import length_mix
from vlm_train.train import sft
from vlm_train.train.args import build_training_args
from vlm_train.train.collator import SFTCollator
from vlm_train.train.dataloading import measure_lengths
from vlm_train.train.sft_options import split_sft

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "configs" / "debug" / "internvl_tiny_sft.yaml"


def args_for(tmp_path, *overrides):
    cfg = load_config(CFG, [f"run.storage_path={tmp_path}", *overrides])
    return build_training_args(cfg, "sft", 0, False), split_sft(cfg.sft)[0]


def test_dataloader_defaults_follow_the_pool(tmp_path):
    cpu, _ = args_for(tmp_path)
    assert cpu.dataloader_num_workers == 0  # 2-core embedded default: batches built inline
    gpu, _ = args_for(tmp_path, "cluster.pool=h100-80gb")  # 16 CPUs per GPU worker
    assert (gpu.dataloader_num_workers, gpu.dataloader_prefetch_factor, gpu.dataloader_persistent_workers) == (8, 2, True)
    user, _ = args_for(tmp_path, "cluster.pool=h100-80gb", "sft.dataloader_num_workers=3",
                       "sft.dataloader_persistent_workers=false")
    assert (user.dataloader_num_workers, user.dataloader_persistent_workers) == (3, False)
    mem, _ = args_for(tmp_path, "sft.dataloader_num_workers=2", "data.cache=memory")
    assert mem.dataloader_persistent_workers  # a worker's memory cache must outlive the epoch


def test_our_sft_keys_never_reach_trl(tmp_path):
    args, opts = args_for(tmp_path, "sft.packing=true", "sft.loss_weighting=square", "sft.packing_buffer=64")
    assert (opts.packing, opts.loss_weighting, opts.packing_buffer) == (True, "square", 64)
    assert not args.packing and not args.padding_free  # TRL would refuse them with our collator
    grouped, opts = args_for(tmp_path, "sft.group_by_length=true")
    assert opts.group_by_length and grouped.train_sampling_strategy == "group_by_length"
    for bad, key in (("sft.loss_weighting=mean", "sft.loss_weighting"), ("sft.packing_buffer=0", "sft.packing_buffer"),
                     ("sft.packing=1", "sft.packing"), ("sft.packing_strategy=wrapped", "sft.packing_strategy")):
        with pytest.raises(ConfigError, match=key):
            load_config(CFG, [bad])
    with pytest.raises(ConfigError, match="sft.group_by_length"):
        load_config(CFG, ["sft.packing=true", "sft.group_by_length=true"])


@pytest.fixture(scope="module")
def mix(tmp_path_factory, tiny_internvl):
    from transformers import AutoProcessor

    root = tmp_path_factory.mktemp("mix")
    samples = length_mix(root, 12, seed=5, answer_words=(3, 60), tool_fraction=0.3)
    fam = get_family("internvl")
    builder = fam.make_inputs(AutoProcessor.from_pretrained(tiny_internvl), InputsConfig(image_roots=(str(root),), max_length=512))
    return fam, builder, [{"sample": s.to_json()} for s in samples]


class CountingBuilder:
    """Counts builds in a directory (one file per build), so worker processes count too."""

    def __init__(self, builder, where: Path):
        self.builder, self.where, self.pad_id = builder, where, builder.pad_id
        where.mkdir(parents=True, exist_ok=True)

    def __call__(self, samples, **kw):
        import os
        import uuid

        (self.where / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        return self.builder(samples, **kw)

    def count(self) -> int:
        return len(list(self.where.iterdir()))


def batches(collator, rows, workers, **kw):
    loader = DataLoader(rows, batch_size=4, collate_fn=collator, num_workers=workers, **kw)
    return [b for b in loader]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_collator_in_two_worker_processes_gives_the_same_batches(mix):
    fam, builder, rows = mix
    for packed in (False, True):
        col = SFTCollator(builder, fam.merge_visuals, max_length=512, packed=packed)
        inline, workers = batches(col, rows, 0), batches(col, rows, 2)
        assert len(inline) == 3 and all(same(a, b) for a, b in zip(inline, workers, strict=True))


@pytest.mark.parametrize("mode,workers", [("memory", 0), ("memory", 2), ("disk", 2)])
def test_epoch_2_builds_nothing(mix, tmp_path, mode, workers):
    fam, builder, rows = mix
    counting = CountingBuilder(builder, tmp_path / "builds")
    cache = EncodingCache(mode, tmp_path / "cache" if mode == "disk" else None)
    col = SFTCollator(counting, fam.merge_visuals, max_length=512, packed=True, cache=cache)
    loader = DataLoader(rows, batch_size=4, collate_fn=col, num_workers=workers, persistent_workers=workers > 0)
    first = list(loader)
    assert counting.count() == len(rows)  # each image decoded and tiled once
    second = list(loader)
    assert counting.count() == len(rows)  # epoch 2 served from the cache
    assert all(same(a, b) for a, b in zip(first, second, strict=True))
    plain = SFTCollator(builder, fam.merge_visuals, max_length=512, packed=True)
    assert all(same(a, b) for a, b in zip(first, batches(plain, rows, 0), strict=True))  # cached == fresh


def test_measured_lengths_are_the_encoded_lengths(mix):
    fam, builder, rows = mix
    col = SFTCollator(builder, fam.merge_visuals, max_length=512)
    expected = [col.encode(r)["input_ids"].numel() for r in rows]
    assert measure_lengths(col, rows, rank=0, world=1, num_workers=2) == expected
    # Each rank measures its share; together they are the whole list.
    assert measure_lengths(col, rows, rank=1, world=2)[1::2] == expected[1::2]


def test_group_by_length_lowers_padding_and_keeps_the_epoch(mix):
    """The trainer's rows carry our measured lengths; transformers' length-grouped sampler over
    them yields the same samples per epoch in micro-batches of similar length."""
    import random

    from transformers.trainer_pt_utils import LengthGroupedSampler

    fam, builder, rows = mix
    col = SFTCollator(builder, fam.merge_visuals, max_length=512)
    lengths = measure_lengths(col, rows, 0, 1)
    samples = [Sample.from_json(r["sample"]) for r in rows]
    ds = sft.train_rows(samples, lengths)
    assert ds["length"] == lengths and ds[0]["sample"] == rows[0]["sample"]

    rng = random.Random(0)
    many = [int(rng.lognormvariate(5, 1)) + 30 for _ in range(400)]
    torch.manual_seed(0)
    order = list(LengthGroupedSampler(4, lengths=many))
    assert sorted(order) == list(range(len(many)))

    def pad_fraction(idx):
        groups = [idx[i : i + 4] for i in range(0, len(idx), 4)]
        return 1 - sum(many[i] for i in idx) / sum(len(g) * max(many[i] for i in g) for g in groups)

    shuffled = torch.randperm(len(many)).tolist()
    assert pad_fraction(order) < 0.5 * pad_fraction(shuffled)


def test_trainer_dataloaders_plan_packed_rows_and_length_groups(mix, tiny_internvl, tmp_path):
    """The trainer's own train dataloader: with sft.packing, micro-batches of planned rows of at
    most max_length tokens covering the epoch once; with group_by_length, the lengths column
    drives transformers' sampler and batches stay padded."""
    from vlm_train.config import ModelConfig
    from vlm_train.testing.sft_trainer import local_sft_trainer
    from vlm_train.train.sft_options import SFTOptions

    fam, builder, rows = mix
    model, proc = fam.load(ModelConfig(path=str(tiny_internvl)), dtype=torch.float32)
    packed = SFTCollator(builder, fam.merge_visuals, max_length=512, packed=True)
    lengths = measure_lengths(packed, rows, 0, 1)
    trainer = local_sft_trainer(model, proc, packed, rows, tmp_path / "p", options=SFTOptions(packing=True),
                                max_length=512, per_device_train_batch_size=2)
    trainer.lengths = lengths
    batches = list(trainer.get_train_dataloader())
    assert sum(int(b["real_tokens"].sum()) for b in batches) == sum(lengths)  # every sample once
    assert all(b["input_ids"].shape[0] <= 2 and "attention_mask" not in b for b in batches)
    assert all(int(r) <= 512 for b in batches for r in b["real_tokens"])

    samples = [Sample.from_json(r["sample"]) for r in rows]
    padded = SFTCollator(builder, fam.merge_visuals, max_length=512)
    grouped = local_sft_trainer(model, proc, padded, [dict(r) for r in sft.train_rows(samples, lengths)], tmp_path / "g",
                                options=SFTOptions(group_by_length=True), max_length=512, per_device_train_batch_size=4,
                                train_sampling_strategy="group_by_length", length_column_name="length")
    gb = list(grouped.get_train_dataloader())
    assert sum(int(b["attention_mask"].sum()) for b in gb) == sum(lengths)
