"""Atomic checkpoints holding everything needed to resume exactly, loadable with weights_only, and
the network of a training checkpoint.

``torch.load(weights_only=True)`` accepts tensors and plain containers of str/int/float/bool/None,
so the NumPy and Python RNG states are stored as tensors and lists rather than as their native
objects, and the run's arguments as a plain dict.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .models import build_model


#: What a training checkpoint holds (see emseg.train.save).
TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "sampler", "rng", "iteration", "num_classes", "args")
#: What a checkpoint needs to give back its network.
MODEL_KEYS = ("model", "num_classes", "args")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or is not what the caller needs. Names the file."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then
    ``os.replace``, so a crash mid-write never leaves a truncated checkpoint behind. Temporary
    files that an earlier, killed write left beside ``path`` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is empty, truncated, not a torch file,
    holds objects ``weights_only`` refuses, is not a dict, or lacks one of the ``required`` keys.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, ... here
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason[:300]})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not an emseg training checkpoint (no {', '.join(repr(k) for k in missing)})")
    return ckpt


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
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_from_checkpoint(path: str | os.PathLike, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a training checkpoint (eval mode) and the run's arguments."""
    ckpt = load_checkpoint(path, required=MODEL_KEYS)
    args = ckpt["args"]
    model = build_model(args["model"], ckpt["num_classes"], width=args["width"], dropout=args.get("dropout"),
                        context=args.get("context"), input_scale=args.get("input_scale") or 1.0)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), args
