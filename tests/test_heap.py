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
    thresholds = gc.get_threshold()
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
        gc.set_threshold(*thresholds)


def test_settle_raises_only_the_youngest_threshold() -> None:
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        heap.settle()
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
        # Objects alive together for a while (a batch of polls in flight: 3,000 here)
        # no longer start a collection, as they did above 700.
        before = gc.get_stats()[0]["collections"]
        in_flight = [_Node() for _ in range(3000)]
        assert gc.get_stats()[0]["collections"] == before
        del in_flight
    finally:
        heap.thaw()
        gc.set_threshold(*thresholds)
