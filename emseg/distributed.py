"""Processes of a run: DDP from the torchrun environment, and the log every process writes to."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger("emseg")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def max_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of ``value`` over every process (``value`` itself in one)."""
        if self.world_size == 1:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return value

    def sum_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``value`` over every process (``value`` itself in one)."""
        if self.world_size == 1:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value

    def barrier(self) -> None:
        """Wait for every process (a no-op in a single-process run)."""
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device_type: str) -> DistInfo:
    """DDP from the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK); nccl on GPU, gloo on CPU."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def setup_logging(out: Path, info: DistInfo) -> None:
    """The "emseg" logger: INFO on the main process (to stdout and ``out/train.log``), warnings
    only on the others."""
    log.setLevel(logging.INFO if info.main else logging.WARNING)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(fmt)
    log.addHandler(h)
    if info.main:
        fh = logging.FileHandler(out / "train.log")
        fh.setFormatter(fmt)
        log.addHandler(fh)
