"""The engine's thread pool: independent tasks (row chunks of a level, result blocks) run on a few threads.

numpy's gathers, scipy's sparse products and the numba loops release the GIL, so a level's row chunks
run in parallel. ``EDGEGRAD_THREADS`` (``memory.thread_count``) sets the threads; a forked child
starts a fresh pool on first use. Both kernels (``passes``, ``numba_kernel``) run their tasks here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .memory import thread_count

__all__ = ["PARALLEL_MIN_WORK", "run_all", "spans", "thread_spans"]

#: below this many multiply-adds a handful of tasks run inline: a thread hand-off costs ~20 µs
#: (read as ``pool.PARALLEL_MIN_WORK`` at call time, so tests can lower it)
PARALLEL_MIN_WORK = 200_000

_pool: ThreadPoolExecutor | None = None


def _get_pool() -> ThreadPoolExecutor | None:
    global _pool
    if _pool is None and thread_count() > 1:
        _pool = ThreadPoolExecutor(max_workers=thread_count(), thread_name_prefix="edgegrad")
    return _pool


def _forget_pool() -> None:
    """A forked child has no pool threads: start a fresh pool on first use."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def spans(n: int, step: int) -> list[tuple[int, int]]:
    """[0, n) cut into consecutive spans of ``step``."""
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def thread_spans(n: int) -> list[tuple[int, int]]:
    """[0, n) cut into one span per engine thread (fewer when n is smaller)."""
    return spans(n, max(1, -(-n // thread_count())))


def run_all(tasks: Iterable[Callable[[], None]], work: int) -> None:
    """Run independent tasks on the pool; inline when there is one thread, one task or little ``work``."""
    tasks = list(tasks)
    pool = _get_pool() if len(tasks) > 1 and work >= PARALLEL_MIN_WORK else None
    if pool is None:
        for task in tasks:
            task()
        return
    for future in [pool.submit(_quietly, task) for task in tasks]:
        future.result()


def _quietly(task: Callable[[], None]) -> None:
    """Run a task with float overflow left to the caller's finiteness check (errstate is per thread)."""
    with np.errstate(over="ignore", invalid="ignore"):
        task()
