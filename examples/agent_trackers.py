"""A tracker per agent, in a tree: totals with and without children, per-model and per-provider
breakdowns, reasoning and cache tokens, provider-reported cost, save to file, reset.

Runs offline: the real anthropic and openai SDKs talk to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import openai

import tokentrail as tt
from tokentrail.compat import create_token_tracker
from tokentrail.testing.mock_llm import MockLLMServer


def main() -> None:
    orchestrator = create_token_tracker("orchestrator", enable_detailed_logging=False)
    researcher = create_token_tracker(
        "researcher", parent_tracker=orchestrator, track_per_model=True, track_per_provider=True
    )
    writer = create_token_tracker("writer", parent_tracker=orchestrator)

    with MockLLMServer() as server:
        claude = tt.wrap(
            anthropic.Anthropic(base_url=server.url("anthropic"), api_key="test"), researcher.node
        )
        gpt = tt.wrap(openai.OpenAI(base_url=server.url("openai"), api_key="test"), writer.node)
        orchestrator_gpt = tt.wrap(
            openai.OpenAI(base_url=server.url("openai"), api_key="test"), orchestrator.node
        )

        # 3,000 prompt tokens of which 2,000 read from the prompt cache
        server.queue(input=3000, output=400, cache_read=2000)
        claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=1024, messages=[{"role": "user", "content": "find sources"}]
        )
        # 500 output tokens of which 300 reasoning
        server.queue(input=800, output=500, reasoning=300)
        gpt.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "draft"}])
        server.queue(input=200, output=50)
        orchestrator_gpt.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "plan"}]
        )

    # A call whose provider reported its own cost (e.g. through LiteLLM): that figure is preferred.
    writer.track(tt.Usage(input_tokens=1000, output_tokens=100), "gpt-4o", provider_cost="0.004")

    for node in (orchestrator, researcher, writer):
        total = node.get_total_usage(include_children=True)
        print(
            f"{node.name}: calls={total.calls} input={total.input_tokens} output={total.output_tokens} "
            f"reasoning={total.reasoning_tokens} cache_read={total.cache_read_tokens} cost=${total.cost} "
            f"computed=${total.computed_cost} provider_reported=${total.provider_cost}"
        )
    own = orchestrator.get_total_usage(include_children=False)
    print(f"orchestrator alone: calls={own.calls} cost=${own.cost}")
    for model, row in orchestrator.get_model_breakdown().items():
        print(f"model {model}: calls={row.calls} cost=${row.cost}")
    for provider, row in orchestrator.get_provider_breakdown().items():
        print(f"provider {provider}: calls={row.calls} cost=${row.cost}")
    orchestrator.print_summary(detailed=True)

    path = orchestrator.save_to_file(Path("agents.json"))
    saved = json.loads(path.read_text())
    print(f"saved {len(saved['records'])} records to {path.name}")
    print(
        f"reset dropped {writer.reset_stats()} writer records; orchestrator now has "
        f"{orchestrator.get_total_usage().calls} calls"
    )


if __name__ == "__main__":
    main()
