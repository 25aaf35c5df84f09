"""Input checks with pydensecrf's rules and, where it has them, its (Cython) error messages."""

from __future__ import annotations

import enum

import numpy as np

# C names of NumPy dtypes, as pydensecrf's (Cython) buffer errors spell them.
_C_NAMES = {
    "float32": "float",
    "float64": "double",
    "float16": "half",
    "uint8": "unsigned char",
    "int8": "signed char",
    "int16": "short",
    "uint16": "unsigned short",
    "int32": "int",
    "uint32": "unsigned int",
    "int64": "long",
    "uint64": "unsigned long",
    "bool": "bool",
}


def buffer(obj, name: str, ndim: int, dtype=np.float32) -> np.ndarray:
    """``obj`` as an ndarray of ``ndim`` dims, ``dtype``, C-contiguous, or pydensecrf's error."""
    if obj is None:
        raise TypeError(f"Argument '{name}' must not be None")
    arr = obj if isinstance(obj, np.ndarray) else np.asarray(memoryview(obj))
    if arr.ndim != ndim:
        raise ValueError(f"Buffer has wrong number of dimensions (expected {ndim}, got {arr.ndim})")
    if arr.dtype != dtype:
        want, got = np.dtype(dtype).name, arr.dtype.name
        raise ValueError(
            f"Buffer dtype mismatch, expected '{_C_NAMES.get(want, want)}' but got '{_C_NAMES.get(got, got)}'"
        )
    if not arr.flags.c_contiguous:
        raise ValueError("ndarray is not C-contiguous")
    return arr


def one_of(value, kind: type[enum.IntEnum], name: str) -> enum.IntEnum:
    """``value`` as a member of ``kind``, or a ValueError listing them (pydensecrf takes any int)."""
    try:
        return kind(int(value))
    except (TypeError, ValueError):
        names = ", ".join(f"{m.name} ({m.value})" for m in kind)
        raise ValueError(f"{name} must be one of {names}, got {value!r}") from None
