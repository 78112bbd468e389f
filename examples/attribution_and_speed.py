"""Tracking by session, user and agent, and tokens-per-second metrics.

Runs offline: the real openai SDK talks to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

import openai

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer


def main() -> None:
    tracker = tt.Tracker()
    with MockLLMServer() as server:
        client = tt.wrap(openai.OpenAI(base_url=server.url("openai"), api_key="test"), tracker)
        for agent, user, session, output in (
            ("planner", "alice", "s-1", 100),
            ("coder", "alice", "s-1", 400),
            ("coder", "bob", "s-2", 300),
        ):
            server.queue(input=1000, output=output)
            with tt.scope(agent=agent, user=user, session=session):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}]
                )

    for key in ("session", "user", "agent"):
        for row in sorted(tracker.summary(by=(key,)), key=lambda r: str(r.group[key])):
            print(f"by {key} {row.group[key]}: calls={row.calls} output={row.output_tokens} cost=${row.cost}")

    measured = tracker.totals()
    print(
        f"measured: timed_calls={measured.timed_calls} tokens_per_second>0={(measured.tokens_per_second or 0) > 0}"
    )

    # A call timed by you (e.g. a provider you call by hand): 500 output tokens in 2 s
    tracker.record(
        tt.Usage(input_tokens=100, output_tokens=500), "gpt-4o-mini", duration_ms=2000.0, agent="batch"
    )
    batch = tracker.totals(agent="batch")
    print(
        f"batch: tokens_per_second={batch.tokens_per_second:.1f} average_duration_ms={batch.average_duration_ms:.0f}"
    )


if __name__ == "__main__":
    main()
