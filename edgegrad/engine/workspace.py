"""Reused scratch memory for the engine's big per-slab buffers (activations, f'(z), δ).

Fresh large arrays are mapped anew by the OS on every call and each page is faulted in on first
write, which costs as much as the arithmetic on them. A call borrows one flat buffer for all its
slabs and gives it back; up to ``KEEP_BYTES`` of buffers stay cached for the next call (never
more than the slab budget allows, so idle memory does not grow with the batch).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .memory import slab_budget

__all__ = ["borrowed", "carve", "clear"]

#: at most this many cached buffers (one per concurrently running call is the common case)
KEEP_BUFFERS = 2

_lock = threading.Lock()
_free: list[np.ndarray] = []


@contextmanager
def borrowed(nbytes: int) -> Iterator[np.ndarray]:
    """A flat uint8 buffer of at least ``nbytes`` for the duration of a call (cached ones reused)."""
    buf = _take(nbytes)
    try:
        yield buf
    finally:
        _give(buf)


def _take(nbytes: int) -> np.ndarray:
    with _lock:
        fitting = [i for i, b in enumerate(_free) if b.nbytes >= nbytes]
        if fitting:
            best = min(fitting, key=lambda i: _free[i].nbytes)
            return _free.pop(best)
    return np.empty(max(1, nbytes), dtype=np.uint8)


def _give(buf: np.ndarray) -> None:
    keep = 2 * slab_budget()                       # the slab budget plus its fixed share, roughly
    if buf.nbytes > keep:
        return
    with _lock:
        _free.append(buf)
        _free.sort(key=lambda b: b.nbytes, reverse=True)
        while len(_free) > KEEP_BUFFERS or sum(b.nbytes for b in _free) > keep:
            _free.pop()                            # drop the smallest


def carve(buf: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
    """A C-contiguous array of ``shape`` at byte ``offset`` of ``buf``, and the offset after it (aligned to 64)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    end = offset + count * dtype.itemsize
    view = buf[offset:end].view(dtype).reshape(shape)
    return view, (end + 63) // 64 * 64


def clear() -> None:
    """Drop every cached buffer."""
    with _lock:
        _free.clear()
