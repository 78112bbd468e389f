"""`python -m tokentrail.demo`: a small multi-agent run through the real SDKs, tracked, then reported.

A local `MockLLMServer` stands in for OpenAI and Anthropic, so the demo needs no network and no API
key, yet every call goes through the real `openai` and `anthropic` client libraries, instrumented with
the one line `tokentrail.instrument(tracker)`:

- the researcher plans with OpenAI, searches in parallel threads (a shared system prompt: the
  server reports cache hits after the first), and summarizes with Anthropic (cached system prompt);
- the writer drafts sections in asyncio tasks (AsyncOpenAI) and streams its conclusion from a
  reasoning model;
- the reviewer fact-checks with Anthropic's `messages.stream(...)` helper and checks style with a
  custom in-house model served OpenAI-compatibly, which nobody has priced (reported as unpriced,
  never as $0).

Records go to `demo.db` (SQLite) when the SQLite store is available, else stay in memory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from tokentrail.adapters import instrument, uninstrument
from tokentrail.scope import ScopedThreadPoolExecutor, scope
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

__all__ = ["DEMO_DB", "main", "run_scenario"]

DEMO_DB = "demo.db"
DEMO_CHART = "demo-cost-by-agent.png"

RESEARCH_SYSTEM = (
    "You are a meticulous research assistant. Cite sources, prefer primary documents, quote numbers "
    "exactly, and say when something is uncertain. "
) * 12  # long enough to be worth caching
REVIEW_SYSTEM = "You are a strict reviewer. Check every claim against the notes. " * 8
TOPIC = "LLM cost tracking"


def _ask(client: Any, model: str, prompt: str, system: str | None = None, **options: Any) -> Any:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return client.chat.completions.create(model=model, messages=messages, **options)


class Agents:
    """The three agents of the scenario; their clients are the SDKs' own, pointed at the mock server."""

    def __init__(self, server: MockLLMServer) -> None:
        import anthropic
        import openai

        self.server = server
        self.openai = openai.OpenAI(base_url=server.url("openai"), api_key="demo", max_retries=0)
        self.anthropic = anthropic.Anthropic(base_url=server.url("anthropic"), api_key="demo", max_retries=0)

    def research(self) -> list[str]:
        """Plan queries, search them in parallel threads, summarize with a cached system prompt."""
        with scope(tool="planner"):
            _ask(self.openai, "gpt-4o-mini", f"Plan web searches about {TOPIC}")
        queries = [f"{TOPIC} {angle}" for angle in ("history", "costs", "benchmarks")]
        with scope(tool="web_search"), ScopedThreadPoolExecutor(max_workers=3) as pool:
            list(
                pool.map(lambda q: _ask(self.openai, "gpt-4o-mini", f"Search: {q}", RESEARCH_SYSTEM), queries)
            )
        with scope(tool="summarize", tags=["cached"]):
            for query in queries:
                self.anthropic.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=512,
                    system=RESEARCH_SYSTEM,
                    messages=[{"role": "user", "content": f"Summarize results for {query}"}],
                )
        return queries

    async def write(self, notes: list[str]) -> None:
        """Draft each section in its own asyncio task; stream the conclusion from a reasoning model."""
        import openai

        client = openai.AsyncOpenAI(base_url=self.server.url("openai"), api_key="demo", max_retries=0)

        async def section(title: str) -> None:
            with scope(tool="draft_section", tags=[f"section:{title}"]):
                await _ask(client, "gpt-4.1", f"Write the {title} section on {TOPIC}: {notes}")

        await asyncio.gather(*(section(title) for title in ("introduction", "findings", "outlook")))
        with scope(tool="conclude", tags=["streamed"]):
            self.server.queue(input=180, output=160, reasoning=96, route="openai.chat")
            stream = await _ask(client, "o3-mini", f"Conclude the article on {TOPIC}", stream=True)
            async for _ in stream:
                pass
        await client.close()

    def review(self) -> None:
        """Fact-check with a streamed Anthropic call; check style with an unpriced in-house model."""
        with (
            scope(tool="fact_check", tags=["streamed"]),
            self.anthropic.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=1024,
                system=REVIEW_SYSTEM,
                messages=[{"role": "user", "content": f"Check the facts of the article on {TOPIC}"}],
            ) as stream,
        ):
            stream.get_final_text()
        with scope(tool="style_check", tags=["in-house"]):
            _ask(self.openai, "acme-reviewer-7b", f"Check the style of the article on {TOPIC}")


def run_scenario(tracker: Tracker, server: MockLLMServer | None = None) -> None:
    """Run the whole multi-agent session through the instrumented SDKs, recording into `tracker`."""
    if server is None:
        with MockLLMServer() as running:
            run_scenario(tracker, running)
        return
    instrument(tracker)
    try:
        agents = Agents(server)
        with scope(session="demo-session-1", user="alice", tags=["demo"]):
            with scope(agent="researcher"):
                notes = agents.research()
            with scope(agent="writer"):
                asyncio.run(agents.write(notes))
            with scope(agent="reviewer"):
                agents.review()
    finally:
        uninstrument()


def _store() -> str | None:
    """`sqlite:///demo.db` (started afresh) when the SQLite store is available; else memory."""
    if importlib.util.find_spec("tokentrail.stores.sqlite") is None:
        return None
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(DEMO_DB + suffix):
            os.remove(DEMO_DB + suffix)
    return f"sqlite:///{DEMO_DB}"


def main() -> None:
    from rich.console import Console

    from tokentrail.reports.tables import print_report

    try:  # imported before the clock starts: the SDKs take a while to load
        import anthropic  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"the demo drives the real SDKs, and {exc.name!r} is not installed: "
            "pip install 'tokentrail[demo]'"
        ) from None

    store = _store()
    tracker = Tracker(store)
    started = time.perf_counter()
    run_scenario(tracker)
    elapsed_ms = (time.perf_counter() - started) * 1000
    console = Console(width=None if sys.stdout.isatty() else 110)  # a log or CI page: wide enough to read
    print_report(tracker, console=console, title="tokentrail demo: researcher → writer → reviewer")
    where = f"saved to {Path(DEMO_DB).resolve()}" if store else "kept in memory"
    console.print(
        f"[dim]{tracker.totals().calls} calls through the real openai and anthropic SDKs against a local "
        f"mock server, tracked in {elapsed_ms:.0f} ms; {where}.[/dim]"
    )
    from tokentrail.reports.charts import plot

    chart = plot(tracker, "cost-by-agent", DEMO_CHART)
    console.print(f"chart: {Path(chart).resolve()}")
    close = getattr(tracker.store, "close", None)
    if callable(close):
        close()


if __name__ == "__main__":
    main()
