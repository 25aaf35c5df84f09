"""The strong/weak batch sampler: exact strong count per batch, coverage, determinism, resume, DDP."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emseg.data import StrongWeakBatchSampler, VOCSegmentation, collate, make_synthetic_voc, strong_per_batch
from emseg.data.transforms import TrainTransform


def pools(n_strong: int, n_weak: int) -> tuple[list[int], list[int]]:
    # interleaved, so a sampler that confused the pools would be caught by membership
    every = list(range(n_strong + n_weak))
    strong = every[::3][:n_strong] if n_strong <= len(every[::3]) else every[:n_strong]
    weak = [i for i in every if i not in set(strong)][:n_weak]
    return strong, weak


@settings(max_examples=60, deadline=None)
@given(
    n_strong=st.integers(1, 40),
    n_weak=st.integers(1, 200),
    batch=st.integers(1, 12),
    share=st.floats(0.0, 1.0),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_every_batch_has_exactly_the_strong_count(n_strong, n_weak, batch, share, drop_last, seed):
    strong, weak = pools(n_strong, n_weak)
    sp = strong_per_batch(share, batch)
    s = StrongWeakBatchSampler(strong, weak, batch, sp, seed=seed, drop_last=drop_last)
    batches = list(s)
    assert len(batches) == len(s) >= 1
    sset, wset = set(strong), set(weak)
    for b in batches:
        assert len(b) == batch
        assert sum(i in sset for i in b) == sp
        assert sum(i in wset for i in b) == batch - sp
    # an epoch is sized by the pool that needs the most batches to be seen once
    need = max(([n_strong / sp] if sp else []) + ([n_weak / (batch - sp)] if batch - sp else []))
    assert len(s) == max(1, math.floor(need) if drop_last else math.ceil(need))
    # within one pass over a pool nothing repeats: counts differ by at most one
    for pool, per in ((strong, sp), (weak, batch - sp)):
        if per == 0:
            continue
        counts = Counter(i for b in batches for i in (b[:sp] if pool is strong else b[sp:]))
        values = [counts.get(i, 0) for i in pool]
        assert max(values) - min(values) <= 1


def test_strong_per_batch_rounds_the_share():
    assert strong_per_batch(0.25, 20) == 5 and strong_per_batch(0.0, 7) == 0 and strong_per_batch(1.0, 7) == 7
    assert strong_per_batch(0.3, 10) == 3 and strong_per_batch(0.26, 10) == 3
    with pytest.raises(ValueError, match="share"):
        strong_per_batch(1.5, 10)


def test_without_drop_last_every_image_of_the_larger_pool_is_seen():
    strong, weak = pools(5, 103)
    s = StrongWeakBatchSampler(strong, weak, 8, 2, seed=1, drop_last=False)
    seen = {i for b in s for i in b}
    assert set(weak) <= seen and set(strong) <= seen


def test_deterministic_from_seed_and_epoch_and_new_order_each_epoch():
    strong, weak = pools(10, 90)
    a = StrongWeakBatchSampler(strong, weak, 10, 3, seed=7)
    b = StrongWeakBatchSampler(strong, weak, 10, 3, seed=7)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    second = list(a)  # iterating again continues with the next epoch
    assert a.epoch == 2 and second != first_a
    b.set_epoch(1)
    assert list(b) == second
    assert list(StrongWeakBatchSampler(strong, weak, 10, 3, seed=8)) != first_a


def test_resume_mid_epoch_gives_the_same_batches():
    strong, weak = pools(12, 77)
    ref = StrongWeakBatchSampler(strong, weak, 6, 2, seed=3, infinite=True)
    it = iter(ref)
    expected = [next(it) for _ in range(40)]  # crosses epoch boundaries (len 19)
    for stop in (0, 5, 19, 23):
        s = StrongWeakBatchSampler(strong, weak, 6, 2, seed=3, infinite=True)
        it = iter(s)
        got = [next(it) for _ in range(stop)]
        state = s.state_dict()
        resumed = StrongWeakBatchSampler(strong, weak, 6, 2, seed=3, infinite=True)
        resumed.load_state_dict(state)
        rit = iter(resumed)
        got += [next(rit) for _ in range(40 - stop)]
        assert got == expected, stop
        # a global step is enough to get there too
        stepped = StrongWeakBatchSampler(strong, weak, 6, 2, seed=3, infinite=True)
        stepped.set_position(0, stop)
        assert next(iter(stepped)) == expected[stop]


def test_state_dict_with_consumed_batches_and_mismatch():
    strong, weak = pools(4, 40)
    s = StrongWeakBatchSampler(strong, weak, 4, 1, seed=0)
    it = iter(s)
    batches = [next(it) for _ in range(6)]  # a DataLoader may have prefetched these
    state = s.state_dict(consumed=2)
    other = StrongWeakBatchSampler(strong, weak, 4, 1, seed=0)
    other.load_state_dict(state)
    assert next(iter(other)) == batches[2]
    with pytest.raises(ValueError, match="seed"):
        StrongWeakBatchSampler(strong, weak, 4, 1, seed=1).load_state_dict(state)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_the_global_batch(world):
    strong, weak = pools(30, 300)
    per_rank = [StrongWeakBatchSampler(strong, weak, 5, 2, seed=4, num_replicas=world, rank=r) for r in range(world)]
    lengths = {len(s) for s in per_rank}
    assert len(lengths) == 1
    epochs = [list(s) for s in per_rank]
    sset = set(strong)
    for step in range(len(epochs[0])):
        batches = [e[step] for e in epochs]
        for b in batches:
            assert len(b) == 5 and sum(i in sset for i in b) == 2
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == len(flat)  # ranks never share an image within a step
    # the weak pool is split, not repeated: one epoch sees each weak image at most once overall
    weak_seen = Counter(i for e in epochs for b in e for i in b[2:])
    assert max(weak_seen.values()) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="strong_per_batch"):
        StrongWeakBatchSampler([0], [1], 4, 5)
    with pytest.raises(ValueError, match="no strong images"):
        StrongWeakBatchSampler([], [1, 2], 4, 1)
    with pytest.raises(ValueError, match="no.*weak|there are none"):
        StrongWeakBatchSampler([0, 1], [], 4, 2)
    with pytest.raises(ValueError, match="both strong and weak"):
        StrongWeakBatchSampler([0, 1], [1, 2], 2, 1)
    with pytest.raises(ValueError, match="non-negative"):
        StrongWeakBatchSampler([0], [1], 2, 1).set_position(0, -1)
    with pytest.raises(ValueError, match="rank"):
        StrongWeakBatchSampler([0], [1], 2, 1, num_replicas=2, rank=2)
    # all strong or all weak batches are fine
    assert all(len(b) == 2 for b in StrongWeakBatchSampler([0, 1, 2], [], 2, 2))
    assert all(len(b) == 2 for b in StrongWeakBatchSampler([], [0, 1, 2], 2, 0))


def test_data_loader_batches_carry_the_strong_share(tmp_path):
    root = make_synthetic_voc(tmp_path / "syn", num_train=24, num_val=0, image_size=48, seed=0, progress=False)
    probe = VOCSegmentation(root, "train_aug")
    strong_ids = set(probe.ids[::4])
    ds = VOCSegmentation(root, "train_aug", transform=TrainTransform(32), strong_ids=strong_ids)
    sampler = StrongWeakBatchSampler(ds.strong_indices, ds.weak_indices, 4, 1, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    n = 0
    for batch in loader:
        n += 1
        assert batch["image"].shape == (4, 3, 32, 32)
        assert int(batch["strong"].sum()) == 1
        weak = ~batch["strong"]
        assert bool((batch["mask"][weak] == 255).all())  # weak images bring no pixel labels
        assert bool((batch["mask"][batch["strong"]] != 255).any())
    assert n == len(sampler) == 18 // 3
