"""timemon.heap: what the agent's reload relies on — a frozen cycle is never collected
until ``thaw`` (so a reload thaws before dropping sources, and freezes only after)."""

from __future__ import annotations

import gc
import weakref

from timemon import heap


class _Node:
    pass


def test_a_frozen_cycle_is_collected_only_after_thaw() -> None:
    node = _Node()
    node.me = node  # a reference cycle, as a ptp or chrony source holds
    gone = weakref.ref(node)
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None  # frozen: the collector does not see it
        heap.thaw()
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert gone() is None
    finally:
        heap.thaw()
