"""Which images are strong, and mini-batches with a fixed share of them.

The paper stresses that every SGD mini-batch of the semi-supervised runs holds a fixed share of
strongly annotated images. :class:`StrongWeakBatchSampler` guarantees the exact count in every batch
(and on every rank), cycling the smaller pool as often as needed.
"""

from __future__ import annotations

import math
import os
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from .io import read_id_list

__all__ = ["select_strong", "strong_per_batch", "StrongWeakBatchSampler"]


def select_strong(
    ids: Sequence[str],
    count: int | None = None,
    list_file: str | os.PathLike | None = None,
    seed: int = 0,
) -> set[str]:
    """Choose the strongly annotated images among ``ids``.

    Either ``list_file`` (ids one a line; on VOC, ``ImageSets/Segmentation/train.txt`` gives the
    paper's 1,464) or ``count`` images drawn uniformly without replacement with ``seed`` (the paper's
    200 / 500 / 750 / 1,000). The draw depends only on the set of ids, the count and the seed, not on
    the order of ``ids``, and a larger count with the same seed contains the smaller one.
    """
    if (count is None) == (list_file is None):
        raise ValueError("give exactly one of count and list_file")
    known = set(ids)
    if list_file is not None:
        chosen = set(read_id_list(list_file))
        unknown = sorted(chosen - known)
        if unknown:
            raise ValueError(f"{list_file}: {len(unknown)} ids are not in the data set, e.g. {unknown[:3]}")
        return chosen
    assert count is not None
    if not 0 <= count <= len(known):
        raise ValueError(f"count must be in [0, {len(known)}], got {count}")
    order = sorted(known)
    perm = np.random.default_rng(seed).permutation(len(order))
    return {order[i] for i in perm[:count]}


def strong_per_batch(share: float, batch_size: int) -> int:
    """Strong images per batch for a share in [0, 1]: ``round(share * batch_size)``."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return int(round(share * batch_size))


class StrongWeakBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices with exactly ``strong_per_batch`` strong images each.

    Two streams, each a sequence of shuffled passes over its pool, feed every batch: the first
    ``strong_per_batch`` indices come from the strong stream and the rest from the weak one. An
    epoch is as many batches as it takes the larger need to see its pool once (ceil, or floor with
    ``drop_last``); the other pool is cycled, reshuffled on each pass. Batch ``k`` of epoch ``e`` is a
    pure function of ``(seed, e, k)``, which makes resuming exact.

    Distributed training: ``batch_size`` and ``strong_per_batch`` are per rank. All ranks draw the
    same global batch of ``batch_size * num_replicas`` and rank ``r`` takes the ``r``-th slice of the
    strong part and of the weak part, so each rank gets exactly ``strong_per_batch`` strong images
    and the ranks' batches are disjoint within a step.

    Iterating yields the batches from the current position to the end of the epoch and then moves
    to the next epoch, so ``for epoch ...: for batch in sampler`` sees a new order each time;
    ``infinite=True`` never stops. ``state_dict()`` records the position after the batches handed
    out so far; a ``DataLoader`` prefetches, so when resuming a run pass the number of batches the
    trainer actually consumed: ``state_dict(consumed=k)`` or :meth:`set_position`.
    """

    def __init__(
        self,
        strong_indices: Sequence[int],
        weak_indices: Sequence[int],
        batch_size: int,
        strong_per_batch: int,
        seed: int = 0,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        infinite: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= strong_per_batch <= batch_size:
            raise ValueError(f"strong_per_batch must be in [0, batch_size={batch_size}], got {strong_per_batch}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.strong = np.asarray(list(strong_indices), dtype=np.int64)
        self.weak = np.asarray(list(weak_indices), dtype=np.int64)
        overlap = np.intersect1d(self.strong, self.weak)
        if overlap.size:
            raise ValueError(f"{overlap.size} indices are both strong and weak, e.g. {overlap[:3].tolist()}")
        self.batch_size = batch_size
        self.strong_per_batch = strong_per_batch
        self.weak_per_batch = batch_size - strong_per_batch
        if self.strong_per_batch and self.strong.size == 0:
            raise ValueError("strong_per_batch > 0 but there are no strong images")
        if self.weak_per_batch and self.weak.size == 0:
            raise ValueError("batch needs weak images (strong_per_batch < batch_size) but there are none")
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.infinite = infinite
        self.epoch = 0
        self.batch = 0  # batches of the current epoch already handed out

    def __len__(self) -> int:
        """Batches per epoch."""
        need = []
        if self.strong_per_batch:
            need.append(self.strong.size / (self.strong_per_batch * self.num_replicas))
        if self.weak_per_batch:
            need.append(self.weak.size / (self.weak_per_batch * self.num_replicas))
        longest = max(need)
        return max(1, math.floor(longest) if self.drop_last else math.ceil(longest))

    def _stream(self, pool: np.ndarray, tag: int, epoch: int, length: int) -> np.ndarray:
        if length == 0:
            return np.zeros(0, dtype=np.int64)
        passes = -(-length // pool.size)
        parts = [pool[np.random.default_rng([self.seed, epoch, tag, p]).permutation(pool.size)] for p in range(passes)]
        return np.concatenate(parts)[:length]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All of this rank's batches of ``epoch``."""
        n, r, world = len(self), self.rank, self.num_replicas
        sp, wp = self.strong_per_batch, self.weak_per_batch
        strong = self._stream(self.strong, 0, epoch, n * sp * world).reshape(n, world, sp)
        weak = self._stream(self.weak, 1, epoch, n * wp * world).reshape(n, world, wp)
        return [strong[k, r].tolist() + weak[k, r].tolist() for k in range(n)]

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            batches = self.epoch_batches(self.epoch)
            while self.batch < len(batches):
                k = self.batch
                self.batch += 1
                yield batches[k]
            self.epoch += 1
            self.batch = 0
            if not self.infinite:
                return

    def set_epoch(self, epoch: int) -> None:
        """Start at the beginning of ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, batch: int = 0) -> None:
        """Continue with batch ``batch`` of ``epoch``; ``set_position(0, i)`` works for any global step i."""
        if epoch < 0 or batch < 0:
            raise ValueError(f"position must be non-negative, got epoch={epoch}, batch={batch}")
        epoch, batch = epoch + batch // len(self), batch % len(self)
        self.epoch, self.batch = int(epoch), int(batch)

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        """Position for exact resume. ``consumed``: batches of the current epoch actually used."""
        batch = self.batch if consumed is None else int(consumed)
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batch": batch,
            "batch_size": self.batch_size,
            "strong_per_batch": self.strong_per_batch,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`; refuses one made with another seed or batch layout."""
        for key in ("seed", "batch_size", "strong_per_batch"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]} but this sampler has {getattr(self, key)}")
        self.set_position(int(state["epoch"]), int(state["batch"]))
