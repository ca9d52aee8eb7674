"""A probe's task ends when the agent cancels it, even when the cancellation comes in
the same pass of the event loop as the data it was waiting for (timemon.probes: on
Python 3.11 ``asyncio.wait_for`` returned the data and dropped the cancellation, and
the task polled on, so ``Agent._stop_source`` and the agent's shutdown waited forever)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
from pathlib import Path

from timemon.probes.gnss import GnssSource

ROOT = Path(__file__).resolve().parent.parent


def test_a_gpsd_reader_cancelled_as_a_line_arrives_stops() -> None:
    async def scenario() -> bool:
        source = GnssSource("gpsd", "gpsd://127.0.0.1:2947")
        reader = asyncio.StreamReader()
        task = asyncio.create_task(source._read_gpsd(reader))
        await asyncio.sleep(0)  # the task now waits for a line
        # The line and the cancellation in one pass: both wake the task at once.
        reader.feed_data(b'{"class":"VERSION","release":"3.22","rev":"3.22",'
                         b'"proto_major":3,"proto_minor":14}\n')
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3.0)
        if not done:  # still reading: end it for the next test (feed EOF)
            reader.feed_eof()
            await asyncio.wait({task}, timeout=3.0)
        return task in done and task.cancelled()

    assert asyncio.run(scenario()), "the cancelled reader went on reading"


def test_no_probe_or_agent_module_uses_asyncio_wait_for() -> None:
    """Every ``asyncio.wait_for`` call in the shipped code could swallow a cancellation
    the same way; ``async with asyncio.timeout(...)`` does not (it counts the task's
    cancel requests)."""
    calls = []
    for path in [*(ROOT / "probes").glob("*.py"), *(ROOT / "timemon").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "wait_for"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "asyncio"):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == []


def test_the_agent_goes_on_when_a_source_ignores_its_cancellation(monkeypatch, caplog) -> None:
    """Defence in depth: a probe that drops one cancellation (as wait_for made them do)
    delays the agent's reload or shutdown by STOP_GRACE, not forever, and says so."""
    from timemon import agent as agent_mod
    from timemon.agent import Agent
    from timemon.config import AgentConfig
    from timemon.source import Source

    monkeypatch.setattr(agent_mod, "STOP_GRACE", 0.3)

    class DropsOneCancel(Source):
        kind = "ntp"

        async def run(self) -> None:
            # The dropped cancellation: it polls on (here for 5 s, so that an agent that
            # waits for it fails this test rather than hanging it).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
            await asyncio.sleep(5.0)

    async def scenario() -> float:
        agent = Agent(AgentConfig(store=None))
        try:
            source = DropsOneCancel("stubborn", 1.0)
            agent.sources["stubborn"] = (None, source,  # type: ignore[assignment]
                                         asyncio.create_task(agent._supervise(source)))
            await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await agent._stop_source("stubborn")
            assert "stubborn" not in agent.sources
            return loop.time() - started
        finally:
            agent._restore_executor.shutdown()
            agent._stats_executor.shutdown()

    elapsed = asyncio.run(scenario())  # (asyncio.run cancels the task again at its end)
    assert 0.3 <= elapsed < 2.0
    assert "did not stop within 0.3 s" in caplog.text
