"""Middleware-style tracking around an OpenAI client: config, per-request usage, summary, events.

Runs offline: the real openai SDK talks to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

import openai

from tokentrail.compat import CostEstimator, MiddlewareConfig, RequestUsage, TokenTrackingMiddleware
from tokentrail.testing.mock_llm import MockLLMServer


class PrintBroadcaster:
    """An EventBroadcaster: a real one would update Prometheus gauges or push to a websocket."""

    def broadcast(self, event: RequestUsage) -> None:
        print(f"event: {event.model} {event.input_tokens}+{event.output_tokens} tokens, ${event.cost}")


def main() -> None:
    with MockLLMServer() as server:
        client = openai.OpenAI(base_url=server.url("openai"), api_key="test")
        config = MiddlewareConfig(
            enabled=True,
            emit_events=True,
            log_usage=False,
            custom_costs={"my-finetune": {"input": "2", "output": "8"}},  # USD per million tokens
        )
        llm = TokenTrackingMiddleware(client, config, broadcaster=PrintBroadcaster())
        server.queue(input=1200, output=300)
        llm.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        server.queue(input=1000, output=500)
        llm.chat.completions.create(model="my-finetune", messages=[{"role": "user", "content": "hi"}])

        for request in llm.get_usage():
            print(
                f"request: provider={request.provider} model={request.model} "
                f"tokens={request.total_tokens} cost=${request.cost} "
                f"timed={request.duration_ms is not None} at={request.timestamp.tzinfo}"
            )
        summary = llm.get_summary()
        print(
            f"summary: requests={summary.request_count} input={summary.input_tokens} "
            f"output={summary.output_tokens} total={summary.total_tokens} cost=${summary.total_cost} "
            f"duration_recorded={summary.total_duration_ms > 0}"
        )

    estimator = CostEstimator()
    for name, rate in estimator.get_all_rates().items():
        print(f"preset {name}: input ${rate.input_per_million}/M output ${rate.output_per_million}/M")


if __name__ == "__main__":
    main()
