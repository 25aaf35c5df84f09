"""The training loader: strong/weak batches whose random augmentation is a pure function of the
sample's place in the run, so workers, prefetching, restarts and DDP do not change it."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..stop import ignore_in_worker
from .sampler import StrongWeakBatchSampler
from .voc import collate


class SeededSamples(torch.utils.data.Dataset):
    """Makes each sample's random augmentation a pure function of its key ``(index, seed)``.

    The transforms draw from torch's global generator; seeding it per sample (inside
    ``fork_rng``, so the caller's stream is untouched) makes the augmentations independent of
    worker processes, prefetching and restarts: a resumed run and a run split over DDP processes
    see exactly the crops an uninterrupted single-process run sees.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: the transforms run on the CPU, and torch.manual_seed would
            # also queue a CUDA seeding (with a stack trace) on every sample
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


def sample_seed(seed: int, step: int, slot: int) -> int:
    """The augmentation seed of the sample in ``slot`` of the global batch of ``step``."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1, dtype=np.uint64)[0] >> 1)


class SeededBatches:
    """Wraps the strong/weak batch sampler: numbers the steps from a start position and gives each
    sample a seed from ``(run seed, step, slot in the global batch)``."""

    def __init__(self, sampler: StrongWeakBatchSampler, seed: int, start_step: int, rank: int):
        self.sampler, self.seed, self.start, self.rank = sampler, seed, start_step, rank

    def __iter__(self):
        sp, wp = self.sampler.strong_per_batch, self.sampler.weak_per_batch
        gs = sp * self.sampler.num_replicas
        for step, batch in enumerate(self.sampler, start=self.start):
            slots = [self.rank * sp + j for j in range(sp)] + [gs + self.rank * wp + j for j in range(wp)]
            yield [(i, sample_seed(self.seed, step, slot)) for i, slot in zip(batch, slots)]


def build_train_loader(
    dataset,
    strong_idx: Sequence[int],
    weak_idx: Sequence[int],
    batch_size: int,
    strong_per_batch: int,
    *,
    seed: int,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
) -> tuple[StrongWeakBatchSampler, torch.utils.data.DataLoader]:
    """An endless loader of ``batch_size`` samples per process (``strong_per_batch`` of them
    strong), positioned at global step ``start_step``; returns ``(sampler, loader)``."""
    sampler = StrongWeakBatchSampler(
        strong_idx,
        weak_idx,
        batch_size,
        strong_per_batch,
        seed=seed,
        drop_last=True,
        num_replicas=world_size,
        rank=rank,
        infinite=True,
    )
    sampler.set_position(0, start_step)
    loader = torch.utils.data.DataLoader(
        SeededSamples(dataset),
        batch_sampler=SeededBatches(sampler, seed, start_step, rank),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=ignore_in_worker,
        # its own generator: creating the iterator must not draw from the global stream (resume)
        generator=torch.Generator().manual_seed(seed),
    )
    return sampler, loader
