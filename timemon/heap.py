"""Keeping the agent's heap lean once its long-lived state is built.

After start-up (and after a restart's history replay) the agent holds a large,
stable set of objects: sources, their statistics, the store's chain heads.
``settle()`` moves them out of the garbage collector's view (``gc.freeze``), so
the collections that scrapes and polls trigger walk only young objects, and
hands the memory the start-up freed back to the kernel (glibc's
``malloc_trim``; the replay of 1,000 stored windows leaves tens of MB of free
arena behind).  It also raises the youngest generation's threshold: see
``YOUNG_THRESHOLD``.  ``thaw()`` undoes the freeze before a reload drops sources, so
their cycles can still be collected.  ``fix_mmap_threshold()``, called once at start,
keeps large blocks out of the heap: see ``MMAP_THRESHOLD``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging

log = logging.getLogger("timemon.heap")

# Net allocations of tracked objects (allocated minus freed) between two collections
# of the youngest generation; CPython's default is 700.  At 1,000 sources a poll's
# coroutines, futures and closure cells stay alive for its round trip, so a gathered
# batch of polls crossed 700 about 11 times a second: 1.2 ms a collection, plus a
# 10 ms second-generation one each second, 2.6 % of a core on the event loop (gc
# callbacks, 65 s at 1,000 sources on the reference VM).  Almost everything a poll
# allocates is freed by its reference count, so with 10,000 the count is rarely
# reached (6 collections in 65 s, 0.06 % of a core).  Reference cycles, which only
# the collector frees, wait longer: up to 10,000 net allocations.
YOUNG_THRESHOLD = 10_000

# Blocks of this many bytes and more get a mapping of their own from glibc's malloc,
# given back to the kernel when freed.  That is glibc's default too, but glibc raises
# it to the size of each such block freed (up to 32 MiB): after the first fold or
# scrape, the stability windows' buffers (133 KiB each) and the folds' and scrapes'
# temporaries (up to a few MB) came from the heap, and the holes the temporaries left
# between long-lived blocks stayed in RSS.  Setting it once stops the raising.
# bench/scale.py --fill-store (1,000 sources, every window full), one session: RSS
# 274.3 to 275.3 MiB in three runs with it; 295.1 to 298.0 MiB in five of six runs
# without, 275.4 MiB in the sixth.  A fresh agent (windows still filling) holds 125 MiB
# against 210 MiB without.  Likely (not measured apart): a window's zeroed buffer in a
# mapping of its own takes RSS only as it fills; from the heap, zeroing touched it all.
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, looked up once (find_library runs ldconfig), if it is glibc; None
    elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _malloc_trim() -> bool:
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` (see there); whether it was set."""
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def settle() -> None:
    """Freeze what lives now and return freed memory to the kernel (a few ms at 1,000
    sources; called on the event loop).  No ``gc.collect()`` first: at 1,000 sources it
    held the loop for ~50 ms, and what it would find is the few reference cycles left
    by start-up, which then stay frozen once."""
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    trimmed = _malloc_trim()
    if log.isEnabledFor(logging.DEBUG):  # get_freeze_count walks every frozen object
        log.debug("heap settled: %d objects frozen, malloc_trim %s", gc.get_freeze_count(),
                  "done" if trimmed else "unavailable")


def thaw() -> None:
    """Let the collector see every object again (before sources are dropped)."""
    gc.unfreeze()
