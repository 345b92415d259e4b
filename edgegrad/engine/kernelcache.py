"""Loading the engine's numba modules, and numba's on-disk cache of them: where it is, whether it holds
them, and the one-off notice.

``load`` imports a module of numba code (``numba_loops``, ``population_kernel``, ``graph_loops``) once per
process; ``compiled`` does so unless the ``kernel`` setting (``kernel_setting``) is ``numpy``. The
first call of a process that runs them loads them from the cache, or, on a fresh install, compiles them
(seconds per dtype): that case is logged once at INFO on this module's logger, which the command line
shows on a terminal. Where numba does not load, ``load`` says why once (WARNING) and the engine runs
numpy.
"""

from __future__ import annotations

import glob
import importlib
import logging
import os
import threading
from typing import Any

from ..errors import InvalidInput
from ..model.activations import ACTIVATION_NAMES
from ..settings import ENV_NAMES, KERNELS, Settings

__all__ = ["COMPILE_NOTICE", "cache_dir", "cached", "notice_if_uncached", "load", "compiled", "kernel_setting"]

log = logging.getLogger(__name__)

#: the module whose kernels numba caches (its index files are ``<module>.<function>-<line>.pyXY.nbi``)
KERNEL_MODULE = "numba_loops"
#: said once, before the first call of a process whose kernels are not in numba's cache yet
COMPILE_NOTICE = ("compiling the engine's numba kernels: a one-off (about 6 s per dtype), cached in {cache}"
                  " for later runs")

_HERE = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
#: module name -> the loaded module, or the reason it did not load (a str)
_loaded: dict[str, Any] = {}


def cache_dir() -> str:
    """Where numba caches the kernels: NUMBA_CACHE_DIR, the package's ``__pycache__`` where writable, else
    numba's per-user cache."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if os.access(_HERE, os.W_OK):
        return os.path.join(_HERE, "__pycache__")
    return os.path.join(os.path.expanduser("~"), ".cache", "numba")


def cached(module: str = KERNEL_MODULE) -> bool:
    """Whether the cache holds the compiled kernels of ``module`` (one of its index files)."""
    folder = cache_dir()
    nested = folder != os.path.join(_HERE, "__pycache__")  # numba's own caches mirror the source's path
    pattern = os.path.join(folder, "**" if nested else "", f"{module}.*.nbi")
    return next(glob.iglob(pattern, recursive=nested), None) is not None


def notice_if_uncached(module: str = KERNEL_MODULE) -> None:
    """Log COMPILE_NOTICE at INFO when ``module``'s kernels are about to be compiled (before its import)."""
    if not cached(module):
        log.info("%s", COMPILE_NOTICE.format(cache=cache_dir()))


def kernel_setting() -> str:
    """The ``kernel`` setting (EDGEGRAD_KERNEL): auto, numpy or compiled; InvalidInput for anything else."""
    value = (Settings.read("kernel") or "auto").strip().lower()
    if value not in KERNELS:
        raise InvalidInput(f"{ENV_NAMES['kernel']}: expected one of {', '.join(KERNELS)}, got {value!r}")
    return value


def compiled(module: str, what: str) -> Any:
    """``load(module, what)``, or None where the kernel setting is ``numpy``."""
    return None if kernel_setting() == "numpy" else load(module, what)


def load(module: str, what: str) -> Any:
    """``edgegrad.engine.<module>`` (numba code), imported once; None where it does not load, ``what`` and
    the reason logged once (numba missing or failing, or activations numbered differently where the module
    numbers them: its ``ORDER``)."""
    found = _loaded.get(module)
    if found is None:
        with _lock:
            found = _loaded.get(module)
            if found is None:
                try:
                    notice_if_uncached(module)
                    found = importlib.import_module(f"{__package__}.{module}")
                    if getattr(found, "ORDER", ACTIVATION_NAMES) != ACTIVATION_NAMES:
                        raise ImportError(f"{module} numbers the activations differently")
                except Exception as exc:          # ImportError, or numba failing in its own way
                    found = f"{type(exc).__name__}: {exc}"
                    log.warning("%s unavailable, using numpy: %s", what, found)
                _loaded[module] = found
    return None if isinstance(found, str) else found
