"""numba's on-disk cache of the compiled kernels: where it is, whether it holds them, and the one-off notice.

The first call of a process that runs the compiled kernels loads them from the cache, or, on a fresh
install, compiles them (seconds per dtype): that case is logged once at INFO on this module's logger,
which the command line shows on a terminal.
"""

from __future__ import annotations

import glob
import logging
import os

__all__ = ["COMPILE_NOTICE", "cache_dir", "cached", "notice_if_uncached"]

log = logging.getLogger(__name__)

#: the module whose kernels numba caches (its index files are ``<module>.<function>-<line>.pyXY.nbi``)
KERNEL_MODULE = "numba_loops"
#: said once, before the first call of a process whose kernels are not in numba's cache yet
COMPILE_NOTICE = ("compiling the engine's numba kernels: a one-off (about 6 s per dtype), cached in {cache}"
                  " for later runs")

_HERE = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str:
    """Where numba caches the kernels: NUMBA_CACHE_DIR, the package's ``__pycache__`` where writable, else
    numba's per-user cache."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if os.access(_HERE, os.W_OK):
        return os.path.join(_HERE, "__pycache__")
    return os.path.join(os.path.expanduser("~"), ".cache", "numba")


def cached() -> bool:
    """Whether the cache holds compiled kernels of this package (an index file of KERNEL_MODULE)."""
    folder = cache_dir()
    nested = folder != os.path.join(_HERE, "__pycache__")  # numba's own caches mirror the source's path
    pattern = os.path.join(folder, "**" if nested else "", f"{KERNEL_MODULE}.*.nbi")
    return next(glob.iglob(pattern, recursive=nested), None) is not None


def notice_if_uncached() -> None:
    """Log COMPILE_NOTICE at INFO when the kernels are about to be compiled (called once, before the import)."""
    if not cached():
        log.info("%s", COMPILE_NOTICE.format(cache=cache_dir()))
