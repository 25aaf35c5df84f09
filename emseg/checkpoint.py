"""Atomic checkpoints holding everything needed to resume exactly, loadable with weights_only, and
the network of a training checkpoint.

``torch.load(weights_only=True)`` accepts tensors and plain containers of str/int/float/bool/None,
so the NumPy and Python RNG states are stored as tensors and lists rather than as their native
objects, and the run's arguments as a plain dict.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .files import CheckpointError, atomic_write, check_folder, lock_beside, read_torch_file
from .models import build_model

log = logging.getLogger("emseg")


#: What a training checkpoint holds (see emseg.train.save).
TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "sampler", "rng", "iteration", "num_classes", "args")
#: What a checkpoint needs to give back its network.
MODEL_KEYS = ("model", "num_classes", "args")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (:func:`emseg.files.atomic_write`): a crash mid-write
    never leaves a truncated checkpoint behind, and a full disk is reported naming ``path``."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is empty, truncated, not a torch file,
    holds objects ``weights_only`` refuses, is not a dict, or lacks one of the ``required`` keys.
    """
    ckpt = read_torch_file(path, map_location)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not an emseg training checkpoint (no {', '.join(repr(k) for k in missing)})")
    return ckpt


def check_state_fits(model: nn.Module, state: Any, path: str | os.PathLike, skip: str | None = None) -> None:
    """Refuse (``ValueError`` naming ``path``) a state that does not give every parameter and
    buffer of ``model`` with its shape, or holds one ``model`` lacks; names starting with
    ``skip`` are left out on both sides."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its 'model' is a {type(state).__name__}, not a state_dict (names -> tensors)")
    own = model.state_dict()
    kept = [k for k in {**own, **state} if skip is None or not k.startswith(skip)]
    wrong = [k for k in kept if k not in own or k not in state or own[k].shape != state[k].shape]
    if wrong:
        missing = sum(k not in state for k in wrong)
        raise ValueError(
            f"{path}: the pretrained network does not fit this model ({', '.join(wrong[:4])}"
            f"{f'; {missing} of its tensors missing' if missing else ''}); it was made for another "
            "--model, --width, context or class list"
        )


def cached_entry(
    path: Path, config: dict, fits: nn.Module, flag: str, make: Callable[[], dict[str, Any]] | None
) -> tuple[dict[str, Any] | None, bool]:
    """A cache entry (a checkpoint made from ``config``, holding a network for ``fits``): the one at
    ``path`` when it is readable and right, else made by ``make()`` and saved there; ``(entry,
    made)``. An unreadable or wrong entry is reported and made again. One process makes an entry at
    a time (the others wait, then find it); the folder must be writable (``flag`` names it) before
    anything is made. Without ``make`` (a process that only reads), ``(None, False)`` if missing."""

    def usable() -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            entry = load_checkpoint(path, required=("model", "config"))
            if entry["config"] != config:
                raise CheckpointError(f"{path}: made with other settings than its name says ({entry['config']})")
            check_state_fits(fits, entry["model"], path)
        except (CheckpointError, ValueError) as err:
            log.warning(f"{err}; it is made again")
            return None
        return entry

    entry = usable()
    if entry is not None or make is None:
        return entry, False
    check_folder(path.parent, flag)
    with lock_beside(path):
        entry = usable()  # made by another process while this one waited
        if entry is not None:
            return entry, False
        try:
            entry = make()
            save_checkpoint(entry, path)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (emseg.stop.Stopped)
            log.info(f"stopped while making {path}: nothing was cached; the same command makes it again")
            raise
    return entry, True


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), NumPy and Python RNG states in weights_only-safe types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_from_checkpoint(path: str | os.PathLike, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a training checkpoint (eval mode) and the run's arguments, with the
    checkpoint's ``num_classes`` and ``class_names`` (None when it predates them) added."""
    ckpt = load_checkpoint(path, required=MODEL_KEYS)
    args = ckpt["args"]
    model = build_model(
        args["model"],
        ckpt["num_classes"],
        width=args["width"],
        dropout=args.get("dropout"),
        context=args.get("context"),
        input_scale=args.get("input_scale") or 1.0,
    )
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), {**args, "num_classes": ckpt["num_classes"], "class_names": ckpt.get("class_names")}
