"""Bin packing of samples into rows of at most ``max_length`` tokens, and the batch sampler
that plans packed micro-batches.

Planning needs each sample's token count after truncation (images expanded); the packed
collator then concatenates exactly the rows planned here. A sample is never split: one
longer than ``max_length`` (which the input builders already truncate without cutting an
image) simply gets a row of its own.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence
from typing import Any


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins whose lengths sum to at most ``capacity``.

    Best-fit decreasing: items in decreasing length, each into the open bin it fills most
    tightly (the least room left that still holds it), else into a new bin. Within a bin,
    indices are in the order they were placed (longest first). O(n log n) lookups.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    # (room left, bin index), kept sorted so the tightest fit is a bisect away.
    rooms: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(rooms, (n, -1))
        if n <= capacity and at < len(rooms):
            room, b = rooms.pop(at)
            bins[b].append(i)
            bisect.insort(rooms, (room - n, b))
        else:
            bins.append([i])
            if n < capacity:
                bisect.insort(rooms, (capacity - n, len(bins) - 1))
    return bins


class PackedBatchSampler:
    """Micro-batches of ``rows_per_batch`` packed rows, planned over a buffer of samples.

    Each epoch: a seeded shuffle of all indices, then buffers of ``buffer_size`` samples; each
    buffer is bin-packed (best-fit decreasing) into rows of at most ``max_length`` tokens, the
    rows are shuffled (so a micro-batch does not hold only the longest samples) and grouped
    ``rows_per_batch`` at a time. Rows of an incomplete last group go back into the next
    buffer. Batches are lists of ``(sample_index, row_in_batch)`` keys that ``RowKeyed``
    datasets understand. Every rank builds the same plan (same seed and epoch); accelerate
    hands each rank its own batches.

    ``batch_size`` is None because batches hold a varying number of samples (accelerate's
    batch-sampler shard reads it).
    """

    batch_size = None
    drop_last = False

    def __init__(self, lengths: Sequence[int], max_length: int, rows_per_batch: int, buffer_size: int, seed: int = 0):
        if rows_per_batch < 1 or buffer_size < 1 or max_length < 1:
            raise ValueError("rows_per_batch, buffer_size and max_length must be >= 1")
        self.lengths = list(lengths)
        self.max_length = max_length
        self.rows_per_batch = rows_per_batch
        self.buffer_size = buffer_size
        self.seed = seed
        self.epoch = 0
        self._plans: dict[int, list[list[tuple[int, int]]]] = {}
        # accelerate's per-rank shard of a batch sampler forwards set_epoch only to a
        # ``.sampler`` of the wrapped one; this is it.
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self, epoch: int) -> list[list[tuple[int, int]]]:
        if epoch in self._plans:
            return self._plans[epoch]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches: list[list[tuple[int, int]]] = []
        carry: list[int] = []
        for start in range(0, len(order), self.buffer_size):
            buf = carry + order[start : start + self.buffer_size]
            rows = [[buf[j] for j in b] for b in best_fit_decreasing([self.lengths[i] for i in buf], self.max_length)]
            rng.shuffle(rows)
            last = start + self.buffer_size >= len(order)
            full = len(rows) if last else len(rows) - len(rows) % self.rows_per_batch
            carry = [i for r in rows[full:] for i in r]
            for g in range(0, full, self.rows_per_batch):
                group = rows[g : g + self.rows_per_batch]
                batches.append([(i, r) for r, row in enumerate(group) for i in row])
        self._plans = {epoch: batches}  # keep one epoch's plan
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.plan(self.epoch))

    def __len__(self) -> int:
        return len(self.plan(self.epoch))


class _EpochHook:
    def __init__(self, owner: PackedBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class RowKeyed:
    """A dataset view indexed by ``(index, row)`` keys: item ``index`` with ``"row"`` added,
    so the packed collator knows which row of the micro-batch each sample goes to."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        index, row = key if isinstance(key, tuple) else (key, None)
        item = dict(self.dataset[int(index)])
        if row is not None:
            item["row"] = int(row)
        return item
