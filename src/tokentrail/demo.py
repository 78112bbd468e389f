"""`python -m tokentrail.demo`: a small multi-agent run, tracked, then reported.

A researcher searches in parallel threads, a writer drafts sections in asyncio tasks, a reviewer
checks the draft with a catalog model and with a custom in-house model nobody has priced. Every call
goes through a `Backend`; the `SimulatedBackend` here makes up deterministic token counts, so the demo
needs no network and no API key. A backend that drives real SDK clients (against a mock server)
only has to implement `Backend.complete`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

from tokentrail._types import Usage
from tokentrail.pricing.catalog import price
from tokentrail.scope import ScopedThreadPoolExecutor, scope
from tokentrail.tracker import Tracker

__all__ = ["Backend", "Completion", "SimulatedBackend", "main", "run_scenario"]


@dataclass(frozen=True, slots=True)
class Completion:
    """What one model call reports back: its usage, how long it took, and any provider-side cost."""

    usage: Usage
    duration_ms: float
    provider: str | None = None
    provider_cost: Decimal | None = None


class Backend(Protocol):
    """Something that runs a model call: simulated here, a real SDK client in integration demos."""

    def complete(
        self, model: str, prompt: str, *, cached_prefix: int = 0, reasoning: bool = False
    ) -> Completion: ...


class SimulatedBackend:
    """Deterministic made-up usage: about one token per four characters of prompt."""

    def complete(
        self, model: str, prompt: str, *, cached_prefix: int = 0, reasoning: bool = False
    ) -> Completion:
        input_tokens = 400 + len(prompt) // 4 + cached_prefix
        output_tokens = 150 + (len(prompt) * 7) % 350
        reasoning_tokens = output_tokens // 2 if reasoning else 0
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens + reasoning_tokens,
            cache_read_tokens=cached_prefix,
            reasoning_tokens=reasoning_tokens,
        )
        duration_ms = 200.0 + output_tokens * 8.5
        if model.startswith("gemini"):  # routed through a gateway that bills in whole micro-dollars
            billed = price(usage, model).total.quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
            return Completion(usage, duration_ms, provider="google", provider_cost=billed)
        return Completion(usage=usage, duration_ms=duration_ms)


class Agents:
    """The three agents of the scenario, each recording into its own node of the tracker."""

    def __init__(self, tracker: Tracker, backend: Backend) -> None:
        self.tracker = tracker
        self.backend = backend

    def call(self, node: str, model: str, prompt: str, **options: bool | int) -> Completion:
        """Run one model call and record it under the agent's node (the active scope adds the rest)."""
        completion = self.backend.complete(model, prompt, **options)  # type: ignore[arg-type]
        self.tracker.child(node).record(
            completion.usage,
            model,
            completion.provider,
            duration_ms=completion.duration_ms,
            provider_cost=completion.provider_cost,
        )
        return completion

    def research(self, topic: str) -> list[str]:
        """Plan queries, search them in parallel threads, summarize with a cached system prompt."""
        with scope(tool="planner"):
            self.call("researcher", "gpt-4o-mini", f"Plan web searches about {topic}")
        queries = [f"{topic} {angle}" for angle in ("history", "costs", "benchmarks")]
        with scope(tool="web_search"), ScopedThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda query: self.call("researcher", "gpt-4o-mini", f"Search: {query}"), queries))
        with scope(tool="summarize", tags=["cached"]):
            for query in queries:
                self.call(
                    "researcher", "claude-sonnet-4-5", f"Summarize results for {query}", cached_prefix=2048
                )
        return queries

    async def write(self, topic: str, notes: list[str]) -> None:
        """Draft each section in its own asyncio task; a reasoning model writes the conclusion."""

        async def section(title: str) -> None:
            with scope(tool="draft_section", tags=[f"section:{title}"]):
                await asyncio.sleep(0)
                self.call("writer", "gpt-4.1", f"Write the {title} section on {topic}: {notes}")

        await asyncio.gather(*(section(title) for title in ("introduction", "findings", "outlook")))
        with scope(tool="conclude"):
            self.call("writer", "o3-mini", f"Conclude the article on {topic}", reasoning=True)

    def review(self, topic: str) -> None:
        """Review with a catalog model and with a custom in-house model that has no price."""
        with scope(tool="fact_check"):
            self.call("reviewer", "gemini-2.0-flash", f"Check the facts of the article on {topic}")
        with scope(tool="style_check", tags=["in-house"]):
            self.call("reviewer", "acme-reviewer-7b", f"Check the style of the article on {topic}")


def run_scenario(tracker: Tracker, backend: Backend | None = None) -> None:
    """Record the whole multi-agent run for one user session."""
    agents = Agents(tracker, backend or SimulatedBackend())
    topic = "LLM cost tracking"
    with scope(session="demo-session-1", user="alice", tags=["demo"]):
        notes = agents.research(topic)
        asyncio.run(agents.write(topic, notes))
        agents.review(topic)


def main() -> None:
    from rich.console import Console

    from tokentrail.reports.tables import print_report

    tracker = Tracker()
    started = time.perf_counter()
    run_scenario(tracker)
    elapsed_ms = (time.perf_counter() - started) * 1000
    console = Console()
    print_report(tracker, console=console, title="tokentrail demo: researcher → writer → reviewer")
    console.print(
        f"[dim]{tracker.totals().calls} calls tracked in {elapsed_ms:.1f} ms (simulated backend).[/dim]"
    )


if __name__ == "__main__":
    main()
