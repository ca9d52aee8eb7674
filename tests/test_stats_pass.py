"""The statistics pass gives way to scrapes without starving: it waits only for sources
whose fold is due, and never longer than its budget in all (review finding: a pass that
waited before every source took ~70 s per fold under back-to-back scrapes)."""

from __future__ import annotations

import time
import types

import pytest

from timemon import agent as agent_mod
from timemon.exporter import AgentState


class _Live:
    def __init__(self, due: bool) -> None:
        self.due = due
        self.folds = 0
        self.result = object()

    def fold_due(self, _now: float) -> bool:
        return self.due

    def compute_if_due(self, _now: float) -> bool:
        self.folds += 1
        return True


class _Source:
    def __init__(self, i: int, due: bool) -> None:
        self.name = f"s{i}"
        self.live = _Live(due)

    def live_fragment(self, _result: object) -> None:
        pass


def _pass(state: AgentState, fake: types.SimpleNamespace) -> float:
    started = time.monotonic()
    agent_mod.Agent._compute_statistics(fake)  # type: ignore[arg-type]
    return time.monotonic() - started


@pytest.mark.parametrize("scraping", [False, True])
def test_a_pass_under_endless_scrapes_stays_within_its_budget(monkeypatch, scraping: bool) -> None:
    monkeypatch.setattr(agent_mod, "SCRAPE_YIELD_MAX", 0.05)
    state = AgentState()
    state.sources = tuple(_Source(i, due=(i % 70 == 69)) for i in range(1000))
    fake = types.SimpleNamespace(state=state, _stats_cursor=0)
    due = [s for s in state.sources if s.live.due]
    if scraping:
        with state.scraping():  # a scrape that never ends: every wait times out
            took = [_pass(state, fake) for _ in range(3)]
        # Each pass waits at most until its budget is spent, then stops: at least one fold
        # per pass, and no wait for the 986 sources with nothing to fold.
        assert max(took) < agent_mod.STATS_BUDGET + 0.05 + 0.5
        assert sum(s.live.folds for s in due) >= 3
    else:
        took = [_pass(state, fake)]
        assert all(s.live.folds == 1 for s in due)  # no scrape: one pass folds them all
        assert all(s.live.folds == 0 for s in state.sources if not s.live.due)
