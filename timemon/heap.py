"""Keeping the agent's heap lean once its long-lived state is built.

After start-up (and after a restart's history replay) the agent holds a large,
stable set of objects: sources, their statistics, the store's chain heads.
``settle()`` moves them out of the garbage collector's view (``gc.freeze``), so
the collections that scrapes and polls trigger walk only young objects, and
hands the memory the start-up freed back to the kernel (glibc's
``malloc_trim``; the replay of 1,000 stored windows leaves tens of MB of free
arena behind).  ``thaw()`` undoes the freeze before a reload drops sources, so
their cycles can still be collected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("timemon.heap")


def _malloc_trim() -> bool:
    """glibc's malloc_trim(0); False where there is no glibc (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def settle() -> None:
    """Collect, freeze what survives, and return freed memory to the kernel."""
    gc.collect()
    gc.freeze()
    trimmed = _malloc_trim()
    log.debug("heap settled: %d objects frozen, malloc_trim %s", gc.get_freeze_count(),
              "done" if trimmed else "unavailable")


def thaw() -> None:
    """Let the collector see every object again (before sources are dropped)."""
    gc.unfreeze()
