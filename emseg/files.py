"""Files written whole or not at all, one writer at a time, and folders checked before work starts.

- :func:`atomic_write`: a temporary file beside the target, locked while it is written, fsync,
  then ``os.replace``; any write error (a full disk included) becomes an ``OSError`` naming the
  target. Temporary files of writers that died are removed; a live writer's (locked) stay.
- :class:`Lock`: an exclusive ``flock`` on a lock file (released when its process ends, however).
- :func:`build_folder`: a folder made under a temporary name and renamed into place, so an
  interrupted build never leaves a half folder behind.
- :func:`check_folder`: refuse a path that cannot be a writable folder before the work starts.
- :func:`read_torch_file`: ``torch.load(weights_only=True)`` with errors that name the file.

Files are created with the permissions the umask gives (0644 for the usual 022), as ``open`` does,
not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or is not what the caller needs. Names the file."""


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and set it back at once)
    os.umask(mask)
    return mask


def _try_lock(fd: int, blocking: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the ``<name>.*.tmp`` files beside ``path`` whose writer died: a writer holds a lock
    on its temporary file until it has renamed it, so an unlocked one is nobody's."""
    for tmp in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue  # renamed or removed meanwhile
        try:
            if _try_lock(fd, blocking=False):
                tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def write_error(path: Path, err: BaseException) -> OSError:
    """An ``OSError`` naming ``path`` for a failed write; torch wraps the file system's error in a
    RuntimeError ("enforce fail at inline_container.cc"), the original is its context."""
    cause = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__
    reason = (cause.strerror or str(cause)) if cause is not None else " ".join(str(err).split())[:200]
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there"
    except OSError:
        free = ""
    full = cause is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = " (the disk is full or a size limit is reached: free space and run again)" if full else ""
    out = OSError(f"cannot write {path}: {reason}{free}{hint}")
    out.errno = cause.errno if cause is not None else None
    return out


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` with ``write(file)`` atomically: readers see the old file or the new one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        while True:
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            _try_lock(fd, blocking=True)
            if os.fstat(fd).st_nlink:
                break
            os.close(fd)  # a cleaner took it for a dead writer's file before it was locked: again
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), 0o666 & ~_umask())
                os.replace(tmp, path)  # still locked: a cleaner never sees it unlocked under its .tmp name
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, RuntimeError) as err:
        raise write_error(path, err) from err


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class Lock:
    """An exclusive lock on the file ``path`` (created when missing), held until :meth:`release`
    or the end of the process; the file holds the holder's pid, for messages."""

    def __init__(self, path: str | os.PathLike, blocking: bool = True) -> None:
        self.path = Path(path)
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        self.acquired = _try_lock(self.fd, blocking)
        if self.acquired:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
        else:
            self.release()

    def holder(self) -> str:
        """The pid written by the process holding the lock ("?" when unknown)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_beside(path: Path) -> Lock:
    """Wait for and take the lock of ``path`` (``.<name>.lock`` in its folder): one writer of a
    cache entry or a data set at a time; the next finds it made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Lock(path.parent / f".{path.name}.lock")


def remove_path(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def build_folder(root: str | os.PathLike, complete: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """``root`` made by ``build(folder)`` in a temporary sibling and renamed into place, unless
    ``complete(root)`` already holds (then nothing is written: a complete folder may be read-only).
    One builder at a time (the others wait, then find it made); what an interrupted build left is
    removed first; an incomplete ``root`` is replaced."""
    given = Path(root)
    root = Path(os.path.abspath(given))  # "." has no name to put a sibling beside
    if root.exists() and not root.is_dir():
        raise ValueError(f"{given}: is a file, expected a folder")
    if complete(root):
        return given
    try:
        lock = lock_beside(root)
    except OSError as err:
        raise OSError(f"cannot write beside {given}: {err.strerror or err}") from None
    with lock:
        if complete(root):  # another process made it while this one waited
            return given
        partial, old = root.with_name(f".{root.name}.partial"), root.with_name(f".{root.name}.old")
        remove_path(partial)
        try:
            partial.mkdir()
            build(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        remove_path(old)
        if os.path.lexists(root):
            root.rename(old)
        partial.rename(root)
        remove_path(old)
    return given


def check_folder(path: str | os.PathLike, flag: str, write: bool = True) -> Path:
    """``path`` as a folder, refused (``ValueError`` naming ``flag``) when it is a file or lies
    under one; with ``write``, also created and refused when nothing can be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file, expected a folder")
    above = path
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        raise ValueError(f"{flag} {path}: {above} is a file, so no folder can be made there")
    if write:
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise ValueError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None
    return path


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; :class:`CheckpointError` naming the file when it
    is missing, empty, truncated, not a torch file or holds objects ``weights_only`` refuses."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty, not a checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, ... here
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason[:300]})") from err
