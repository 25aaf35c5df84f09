"""Stop signals: SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send before SIGKILL).

Outside the training loop SIGTERM raises :class:`Stopped`, as Ctrl-C raises KeyboardInterrupt, so
the work in progress unwinds (temporary files are removed, nothing half-written is kept) and the
CLI exits with 128 + the signal's number. Inside the loop (:class:`StopRequests`) the first signal
only asks for a stop: the loop finishes its iteration, writes a checkpoint and raises
:class:`Stopped`; a second signal stops at once. DataLoader workers ignore both signals
(:func:`ignore_in_worker`): the main process decides, and its exit ends them.
"""

from __future__ import annotations

import signal
import threading

import torch

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The work was stopped by a signal; ``exit_status`` is 128 + its number (130 for SIGINT,
    143 for SIGTERM) and the message says what was kept."""

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        self.exit_status = 128 + signum
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


def raise_on_sigterm() -> None:
    """SIGTERM raises :class:`Stopped` in the main thread (Python's default is to die at once,
    with no clean-up)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)


def ignore_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the loaders: a stop signal sent to the whole process group (Ctrl-C,
    SLURM) must not kill the workers under a main process that is still writing its checkpoint."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopRequests:
    """Within ``with StopRequests() as stop:`` a stop signal sets ``stop.signum`` (the first one)
    instead of interrupting; a second one raises :class:`Stopped` at once. The previous handlers
    come back on exit. Outside the main thread, where Python cannot install handlers, it never
    asks for a stop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Stopped(signum, f"stopped at once by a second {signal.Signals(signum).name}")
        self.signum = signum

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def agreed_signal(stop: StopRequests | None, info, device: torch.device) -> int:
    """The stop signal any process of the run has had (0: none), the same on every process, so all
    stop after the same iteration (``info``: an :class:`emseg.distributed.DistInfo`)."""
    signum = (stop.signum or 0) if stop is not None else 0
    if info.world_size == 1:
        return signum
    return int(info.max_over_processes(torch.tensor(signum, device=device)))
