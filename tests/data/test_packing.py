"""Best-fit decreasing and the packing batch sampler: capacity kept, nothing split or lost,
rows nearly full, deterministic per seed and epoch."""

from __future__ import annotations

import random

from vlm_train.data.packing import PackedBatchSampler, RowKeyed, best_fit_decreasing


def test_bfd_respects_capacity_and_places_every_item_once():
    rng = random.Random(0)
    lengths = [rng.randint(5, 900) for _ in range(500)] + [1500, 1024]  # two over capacity
    bins = best_fit_decreasing(lengths, 1024)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(len(lengths)))
    for b in bins:
        assert len(b) == 1 or sum(lengths[i] for i in b) <= 1024
    assert [500] in bins and [501] in bins  # an over-long item is alone, never split
    fill = sum(lengths) / (1024 * len(bins))
    assert fill > 0.97  # near the optimum for many small items


def test_bfd_takes_the_tightest_fit():
    # 600 goes first; 400 fits exactly beside it; 300 opens a second bin rather than the leftover 0.
    assert best_fit_decreasing([300, 600, 400], 1000) == [[1, 2], [0]]


def test_sampler_plans_rows_of_at_most_max_length_and_covers_the_epoch():
    rng = random.Random(1)
    lengths = [int(rng.lognormvariate(5, 1)) + 20 for _ in range(300)]
    lengths[7] = 5000  # truncation is the builder's job; the plan gives it a row of its own
    s = PackedBatchSampler(lengths, max_length=1024, rows_per_batch=2, buffer_size=64, seed=3)
    batches = list(s)
    seen = sorted(i for b in batches for i, _ in b)
    assert seen == list(range(300))
    real = padded = 0
    for b in batches:
        rows: dict[int, list[int]] = {}
        for i, r in b:
            rows.setdefault(r, []).append(lengths[i])
        assert len(rows) <= 2
        for r in rows.values():
            assert len(r) == 1 or sum(r) <= 1024
        real += sum(map(sum, rows.values()))
        padded += len(rows) * max(map(sum, rows.values()))
    assert real / padded > 0.9  # rows of a micro-batch are all near full
    assert list(s) == batches  # same epoch, same plan (every rank agrees)
    s.set_epoch(1)
    assert list(s) != batches and len(s) == len(list(s))


def test_each_rank_reshuffles_the_plan_every_epoch():
    """Under accelerate, each rank iterates a shard of the sampler; the epoch must reach it."""
    from accelerate.data_loader import BatchSamplerShard, DataLoaderShard

    lengths = [random.Random(i).randint(20, 400) for i in range(64)]
    shards = [BatchSamplerShard(PackedBatchSampler(lengths, 1024, 1, 16, seed=0), 2, r, even_batches=False) for r in range(2)]
    loaders = [DataLoaderShard(list(range(64)), batch_sampler=sh, collate_fn=lambda b: b) for sh in shards]
    epoch0 = [list(sh) for sh in shards]
    assert sorted(i for sh in epoch0 for b in sh for i, _ in b) == list(range(64))  # ranks split the epoch
    for dl in loaders:
        dl.set_epoch(1)
    assert [list(sh) for sh in shards] != epoch0


def test_row_keyed_adds_the_row():
    view = RowKeyed([{"sample": "a"}, {"sample": "b"}])
    assert view[(1, 3)] == {"sample": "b", "row": 3}
    assert view[0] == {"sample": "a"}
