"""Which samples each rank sees, in which order, with which random seed.

Every epoch has one permutation of the dataset, the same on every rank (seeded by
``seed`` and the epoch), dealt out rank by rank, as ``DistributedSampler`` does::

    permutation  p0 p1 p2 p3 p4 p5 p6 p7 ...    rank r takes positions r, r + W, r + 2W, ...

With ``drop_last`` (PySlowFast's training loader: ``DistributedSampler`` padded by wrapping
around to a multiple of ``world_size``, then ``drop_last=True``) each rank takes
``ceil(size / world_size) // batch_size`` whole batches and the rest waits for another
epoch; without it the permutation wraps around to fill the last batch. Either way an epoch
has at least one batch: a dataset smaller than a batch per rank wraps around rather than
train on nothing.

Each position also gets its own seed and the curriculum's hard-negative fraction, carried to
the DataLoader worker with the index (:class:`~avsf.data.clip_dataset.SampleKey`). So an
item's augmentation does not depend on which worker loads it or on how many came before
it in that worker: an epoch resumed at step ``k`` (``start_batch``) yields exactly the
items an uninterrupted epoch would from step ``k`` on, and the curriculum reaches every
worker, persistent or not.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from avsf.data.clip_dataset import SampleKey


def item_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one position of one epoch, unrelated to its neighbours'."""
    mixed = np.random.SeedSequence([seed, epoch, position]).generate_state(2, np.uint32)
    return int(mixed[0]) << 31 ^ int(mixed[1])


class EpochSampler(Sampler[SampleKey]):
    """Deterministic, distributed, resumable: see the module docstring.

    ``shuffle=False`` (validation) keeps dataset order and does not pad: rank r takes
    items r, r + W, ... so every item is seen exactly once across ranks.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = True):
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.batch_size = size, batch_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.drop_last = drop_last
        self.epoch, self.start_batch, self.hard_negative_fraction = 0, 0, 0.0

    def set_epoch(self, epoch: int, start_batch: int = 0, hard_negative_fraction: float = 0.0) -> None:
        self.epoch, self.start_batch, self.hard_negative_fraction = epoch, start_batch, hard_negative_fraction

    @property
    def batches_per_epoch(self) -> int:
        """Batches of ``batch_size`` this rank takes per epoch (training keeps whole batches)."""
        if not self.shuffle:
            return -(-len(self._positions()) // self.batch_size)
        if self.drop_last:
            return max(1, -(-self.size // self.world_size) // self.batch_size)
        return max(1, -(-self.size // (self.world_size * self.batch_size)))

    def _positions(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.rank, self.size, self.world_size)
        total = self.batches_per_epoch * self.world_size * self.batch_size
        return np.arange(self.rank, total, self.world_size)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[SampleKey]:
        order = self._order()
        positions = self._positions()[self.start_batch * self.batch_size :]
        for position in positions:
            yield SampleKey(int(order[position % self.size]), item_seed(self.seed, self.epoch, int(position)),
                            self.hard_negative_fraction)

    def __len__(self) -> int:
        return max(len(self._positions()) - self.start_batch * self.batch_size, 0)
