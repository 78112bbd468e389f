"""Always-on tracking on an agent object, custom rates from settings and environment variables,
TokenCounter and CostEstimator.

Runs offline: the real openai SDK talks to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

import os

# Custom rates from the environment (USD per million tokens), read when prices are first used.
os.environ["TOKENTRAIL_PRICES__ACME_LLM__INPUT"] = "1"
os.environ["TOKENTRAIL_PRICES__ACME_LLM__OUTPUT"] = "4"

import openai

import tokentrail as tt
from tokentrail.compat import CostEstimator, TokenCounter, TokenTrackingMixin
from tokentrail.testing.mock_llm import MockLLMServer


class ResearchAgent(TokenTrackingMixin):
    def __init__(self, name: str, client: openai.OpenAI) -> None:
        self.name = name
        self.client = self.track_client(client)  # every call through it is this agent's

    def run(self, question: str) -> None:
        with tt.scope(tool="web_search"):
            self.client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": question}]
            )
        with tt.scope(tool="summarize"):
            self.client.chat.completions.create(
                model="acme-llm", messages=[{"role": "user", "content": question}]
            )


def main() -> None:
    with MockLLMServer() as server:
        agent = ResearchAgent("researcher", openai.OpenAI(base_url=server.url("openai"), api_key="test"))
        server.queue(input=2000, output=400)
        server.queue(input=1000, output=250)
        agent.run("what changed?")

    usage = agent.get_usage()
    print(f"usage: calls={usage.calls} input={usage.input_tokens} output={usage.output_tokens}")
    print(f"cost: ${agent.get_cost()}")
    breakdown = agent.get_cost_breakdown()
    print(
        f"breakdown: prompt=${breakdown['prompt']} completion=${breakdown['completion']} total=${breakdown['total']}"
    )
    for model, cost in breakdown["by_model"].items():
        print(f"  by model {model}: ${cost}")
    for entry in agent.get_usage_history():
        print(f"history: tool={entry['tool']} model={entry['model']} cost=${entry['cost']}")
    print(f"reset_tracking dropped {agent.reset_tracking()} calls; cost now ${agent.get_cost()}")

    counter = TokenCounter("gpt-4o")
    print(f"count: {counter.count('Tokens are counted exactly.')}")
    print(
        f"count_messages: {counter.count_messages([{'role': 'user', 'content': 'Tokens are counted exactly.'}])}"
    )

    # Custom rates from settings: a mapping given in code (or loaded from your own settings object).
    estimator = CostEstimator(custom_costs={"house-model": {"input": "0.5", "output": "1.5"}})
    print(f"estimate gpt-4o 10k in / 2k out: ${estimator.estimate('gpt-4o', 10_000, 2_000)}")
    print(f"rate acme-llm (env): {estimator.get_rate('acme-llm').as_dict()}")
    estimator.set_rate("house-model", input="0.4", output="1.2")
    print(f"rate house-model (set_rate): {estimator.get_rate('house-model').as_dict()}")
    print(f"all rates: {', '.join(estimator.get_all_rates())}")


if __name__ == "__main__":
    main()
