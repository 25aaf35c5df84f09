"""The folders a training run writes to, claimed and checked before any work starts.

``--output-dir`` holds one run. A new run refuses a folder that holds another run's results
(``checkpoint.pth``, ``best.pth``, ``summary.json``): continue that run with ``--resume``, replace
it with ``--overwrite``, or choose another folder. The demo's default folder is never refused: when
``runs/demo`` holds a run, the next free ``runs/demo-2``, ``runs/demo-3``, ... is used, so running
``python -m emseg.train`` twice gives two runs. A folder with only the logs of a run stopped before
its first checkpoint has nothing to resume and is taken over. ``--resume`` without
``--output-dir`` continues in the checkpoint's folder. While a run writes, its folder is locked
and a second run into it is refused. The old logs a new run replaces are removed, never followed
(a ``metrics.csv`` that is a link is unlinked, not written through).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from itertools import count
from pathlib import Path

import torch.distributed as dist

from .config import TrainConfig
from .distributed import DistInfo
from .files import Lock, check_folder, remove_path
from .stop import Stopped

log = logging.getLogger("emseg")

DEFAULT_OUTPUT_DIR = TrainConfig.output_dir
#: What a run leaves that is worth keeping, and what it writes besides.
RESULTS = ("checkpoint.pth", "best.pth", "summary.json")
LOGS = ("metrics.csv", "train.log", "curves.png", "pictures", "tensorboard")
LOCK_NAME = ".emseg-run.lock"

_held: dict[Path, Lock] = {}  #: the folders this process writes to, with their locks


def describe_run(folder: Path) -> str | None:
    """What ``folder`` holds of a run's results, or None when nothing."""
    if os.path.lexists(folder / "summary.json"):
        return "a finished run (summary.json)"
    if os.path.lexists(folder / "checkpoint.pth"):
        return "an unfinished run (checkpoint.pth, no summary.json)"
    if os.path.lexists(folder / "best.pth"):
        return "a run's best.pth"
    return None


def _lock(folder: Path) -> Lock:
    key = folder.resolve()
    if key in _held:  # an earlier run of this process that ended in an exception: take it over
        return _held.pop(key)
    return Lock(folder / LOCK_NAME, blocking=False)


def _claim(out: Path, numbered: bool, resume: str | None, overwrite: bool) -> Path:
    candidates = (out.with_name(f"{out.name}-{k}") if k > 1 else out for k in count(1)) if numbered else [out]
    for folder in candidates:
        check_folder(folder, "--output-dir")
        lock = _lock(folder)
        if not lock.acquired:
            if numbered:
                continue
            raise ValueError(
                f"--output-dir {folder}: another run (pid {lock.holder()}) is writing there; "
                "wait for it or choose another --output-dir"
            )
        continuing = resume is not None and Path(resume).resolve().parent == folder.resolve()
        held = None if continuing or overwrite else describe_run(folder)
        if held is not None:
            lock.release()
            if numbered:
                continue
            raise ValueError(
                f"--output-dir {folder} holds {held}: continue it with --resume "
                f"{folder / 'checkpoint.pth'}, replace it with --overwrite, or choose another --output-dir"
            )
        if not continuing:  # a new run: what an earlier one left goes, links are unlinked, not followed
            for name in (*LOGS, *RESULTS):
                remove_path(folder / name)
        if folder != out:
            print(f"emseg: {out} holds a run; this one writes to {folder} (--output-dir chooses the folder)")
        _held[folder.resolve()] = lock
        return folder
    raise AssertionError("unreachable")


def claim_output_dir(cfg: TrainConfig, info: DistInfo) -> Path:
    """The run's output folder, checked, cleared of an earlier attempt's logs and locked (by the
    main process; the others are told which). Sets ``cfg.output_dir`` to it."""
    out = Path(cfg.output_dir)
    default = cfg.output_dir == DEFAULT_OUTPUT_DIR
    if cfg.resume and default:
        out = Path(cfg.resume).parent
    if info.main:
        out = _claim(out, numbered=default and not cfg.resume, resume=cfg.resume, overwrite=cfg.overwrite)
    if info.world_size > 1:
        box = [str(out)]
        dist.broadcast_object_list(box, src=0)
        out = Path(box[0])
    cfg.output_dir = str(out)
    return out


def release_output_dir(out: Path) -> None:
    """Unlock ``out`` once the run is over (a process exit unlocks it too)."""
    lock = _held.pop(out.resolve(), None)
    if lock is not None:
        lock.release()


def check_work_folders(cfg: TrainConfig, fixed_labels: bool = False) -> None:
    """Before any work: the synthetic set's folder and the caches must be folders that exist or can
    be made (an existing one may be read-only while it holds what the run needs; writing to it is
    checked again before anything long is made for it)."""
    folders = [("--pretrain-cache", cfg.pretrain_cache)] if cfg.init == "pretrain" and not cfg.pretrained else []
    if fixed_labels:
        folders.append(("--label-cache", cfg.label_cache))
    if not cfg.data_root:
        folders.append(("--synthetic-dir", cfg.data_root_resolved))
    for flag, folder in folders:
        check_folder(folder, flag, write=not Path(folder).is_dir())


def check_resume_data(cfg: TrainConfig, ckpt: dict, fingerprint: str) -> None:
    """A resumed run trains on the data its checkpoint was trained on (``--data-root`` may move it:
    the fingerprint holds names and sizes, not places)."""
    saved = ckpt.get("data")
    if saved and saved != fingerprint:
        raise ValueError(
            f"--resume {cfg.resume}: the training data differ from the checkpoint's (split "
            f"{cfg.train_split!r} of {cfg.data_root_resolved}: other images, masks, annotations or "
            "classes); resume with the data the run was trained on"
        )


def stopped_at(signum: int, done: int, iterations: int, checkpoint: Path, world_size: int) -> Stopped:
    """What ends a run a stop signal interrupted, its message logged: the checkpoint and the
    command that continues from it."""
    stop = Stopped(signum)
    message = (
        f"{stop} at iteration {done} of {iterations}; checkpoint: {checkpoint}; continue with: "
        f"{resume_command(checkpoint, world_size)}"
    )
    log.info(message)
    return Stopped(signum, message)


def resume_command(checkpoint: Path, world_size: int = 1) -> str:
    """The command that continues this run from ``checkpoint``: the same flags, ``--resume``."""
    argv, flags, skip = sys.argv[1:], [], False
    if not sys.argv[0].endswith(os.path.join("emseg", "train.py")):
        argv = ["<the same flags>"]  # not started from the command line
    for arg in argv:
        if skip or arg == "--resume" or arg.startswith("--resume=") or arg == "--overwrite":
            skip = arg == "--resume"
            continue
        flags.append(arg)
    prog = f"torchrun --nproc_per_node {world_size} -m emseg.train" if world_size > 1 else "python -m emseg.train"
    return " ".join(
        [
            prog,
            *(shlex.quote(a) if a != "<the same flags>" else a for a in flags),
            "--resume",
            shlex.quote(str(checkpoint)),
        ]
    )
