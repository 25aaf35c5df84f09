"""The fine-tuning recipe's optimisation: parameter groups, the learning-rate schedule with its
warm-up, gradient-norm clipping and the loss-spike guard.

A pretrained start is fragile: its class scores are already large, so the first full-size steps of
SGD with momentum can throw it out of its basin (the loss jumps by orders of magnitude and the
network ends predicting background everywhere). Three things keep a run in its basin, each
reported in the log when it acts:

* a linear warm-up of the learning rate over the first ``warmup`` iterations;
* clipping the global gradient norm to ``clip_grad`` (the clipped steps are counted);
* :class:`SpikeGuard`: a step whose loss is far above the recent ones is skipped; a non-finite loss,
  or spikes that persist, roll the network and the optimiser back to the last snapshot with half
  the learning rate; after ``max_rollbacks`` roll-backs the run stops, naming the iteration.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import deque

import torch
from torch import nn

log = logging.getLogger("emseg")


def param_groups(model: nn.Module, lr: float, weight_decay: float, classifier_lr_mult: float) -> list[dict]:
    """DeepLab's Caffe multipliers: weights x1 with decay, biases x2 without; the classifier x10 / x20."""
    groups = {k: [] for k in ("w", "b", "cw", "cb")}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = name.startswith("classifier.")
        groups[("c" if head else "") + ("b" if name.endswith("bias") else "w")].append(p)
    m = classifier_lr_mult
    spec = {"w": (1.0, weight_decay), "b": (2.0, 0.0), "cw": (m, weight_decay), "cb": (2.0 * m, 0.0)}
    return [
        {"params": ps, "lr": lr * spec[k][0], "weight_decay": spec[k][1], "lr_mult": spec[k][0], "name": k}
        for k, ps in groups.items()
        if ps
    ]


def lr_factor(
    it: int,
    iterations: int,
    policy: str,
    warmup: int = 0,
    lr_step: int = 1000,
    lr_gamma: float = 0.1,
    poly_power: float = 0.9,
) -> float:
    """The learning rate of iteration ``it`` over the base one: the step or poly schedule, times a
    linear warm-up from ``1 / (warmup + 1)`` to 1 over the first ``warmup`` iterations."""
    if policy == "step":
        factor = lr_gamma ** (it // lr_step)
    else:
        factor = (1.0 - min(it, iterations) / iterations) ** poly_power
    if it < warmup:
        factor *= (it + 1) / (warmup + 1)
    return factor


class SpikeGuard:
    """Watches the training loss and says, before each SGD step, whether to take it.

    A loss above ``factor`` times the median of the last ``window`` accepted losses, and at least
    ``min_rise`` above it, is a spike: its step is skipped (the floor keeps a run whose loss has
    fallen near zero from counting every small rise as a spike). A loss that is not finite, or
    ``patience`` spikes in a row, roll the run back to the last :meth:`snapshot` with the learning
    rate halved (:attr:`lr_scale`); once ``max_rollbacks`` roll-backs have not helped, the run
    stops. ``factor <= 0`` turns the spike test off (non-finite losses still roll back).

    Its state (the window, the counts, the scale) is part of a checkpoint, and a snapshot is taken
    at every checkpoint, so a resumed run continues exactly.
    """

    def __init__(
        self, factor: float = 5.0, window: int = 50, patience: int = 5, max_rollbacks: int = 3, min_rise: float = 0.05
    ) -> None:
        self.factor, self.patience, self.max_rollbacks, self.min_rise = factor, patience, max_rollbacks, min_rise
        self.window_size = window
        self.recent: deque[float] = deque(maxlen=window)
        self.in_a_row = 0
        self.rollbacks = 0
        self.skipped = 0
        self.lr_scale = 1.0
        self._snapshot: tuple[dict, dict] | None = None

    def is_spike(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if self.factor <= 0 or len(self.recent) < self.recent.maxlen // 2:
            return False
        ordered = sorted(self.recent)
        median = ordered[len(ordered) // 2]
        return loss > self.factor * median and loss > median + self.min_rise

    def check(self, loss: float, it: int) -> str:
        """``"step"``, ``"skip"`` (this step only) or ``"rollback"`` (restore and go on) for the
        loss of iteration ``it`` (1-based); raises FloatingPointError when the run should stop."""
        if not self.is_spike(loss):
            self.recent.append(loss)
            self.in_a_row = 0
            return "step"
        self.in_a_row += 1
        self.skipped += 1
        if math.isfinite(loss) and self.in_a_row < self.patience:
            median = sorted(self.recent)[len(self.recent) // 2]
            log.warning(
                f"it {it}: loss spike {loss:.4g} (median of the last {len(self.recent)}: {median:.4g}); step skipped"
            )
            return "skip"
        what = "the loss is not finite" if not math.isfinite(loss) else f"{self.in_a_row} loss spikes in a row"
        if self.rollbacks >= self.max_rollbacks or self._snapshot is None:
            raise FloatingPointError(
                f"{what} at iteration {it} after {self.rollbacks} roll-back(s) with a lower "
                "learning rate; stopped (lower --lr, or raise --warmup)"
            )
        self.rollbacks += 1
        self.lr_scale *= 0.5
        self.in_a_row = 0
        self.recent.clear()
        log.warning(
            f"it {it}: {what}; rolled back to the last snapshot with the learning rate x{self.lr_scale:g} "
            f"(roll-back {self.rollbacks} of at most {self.max_rollbacks})"
        )
        return "rollback"

    def snapshot(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Remember the weights and optimiser state a roll-back returns to (a copy on the CPU)."""
        self._snapshot = (
            {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
            copy.deepcopy(_to_cpu(optimizer.state_dict())),
        )

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        model_state, opt_state = self._snapshot
        model.load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)

    def state_dict(self) -> dict:
        return {
            "recent": list(self.recent),
            "in_a_row": self.in_a_row,
            "rollbacks": self.rollbacks,
            "skipped": self.skipped,
            "lr_scale": self.lr_scale,
        }

    def load_state_dict(self, state: dict) -> None:
        self.recent = deque(state["recent"], maxlen=self.window_size)
        self.in_a_row, self.rollbacks = state["in_a_row"], state["rollbacks"]
        self.skipped, self.lr_scale = state["skipped"], state["lr_scale"]


@torch.no_grad()
def update_teacher(teacher: nn.Module, model: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * model, parameter by parameter."""
    for t, p in zip(teacher.parameters(), model.parameters()):
        t.lerp_(p, 1.0 - decay)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
