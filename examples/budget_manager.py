"""A budget manager with daily, session and hourly limits on cost and tokens: enforcement before the
call, alerts at thresholds, status, and optimization recommendations from analytics.

Runs offline: the real openai SDK talks to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

import openai

import tokentrail as tt
from tokentrail.analytics import advise
from tokentrail.testing.mock_llm import MockLLMServer


def main() -> None:
    budgets = [
        tt.Budget("0.05", window="daily", name="daily-usd"),
        tt.Budget("0.02", window="session", scope={"session": "*"}, name="session-usd"),
        tt.Budget(limit_tokens=5000, window="hourly", name="hourly-tokens"),
    ]
    tracker = tt.Tracker(budgets=budgets)
    assert tracker.budgets is not None
    tracker.budgets.subscribe(
        lambda alert: print(
            f"alert {alert.budget}: threshold {alert.threshold:.0%} ({alert.percent:.0f}% used)"
        )
    )
    with MockLLMServer() as server:
        client = tt.wrap(openai.OpenAI(base_url=server.url("openai"), api_key="test"), tracker)
        with tt.scope(agent="support", session="s-1"):
            for _ in range(4):
                server.queue(input=1000, output=500)
                try:
                    client.chat.completions.create(
                        model="gpt-4o-mini", max_tokens=600, messages=[{"role": "user", "content": "help"}]
                    )
                    print("call ok")
                except tt.BudgetExceeded as exc:
                    print(f"refused by {exc.budget}: spent {exc.spent} of {exc.limit}")

    for status in tracker.budget_status():
        spent = f"${status.spent_usd}" if status.limit_usd is not None else f"{status.spent_tokens} tokens"
        print(f"status {status.budget} [{status.window}]: {spent} = {status.percent:.0f}%")

    advice = advise(tracker)
    for switch in advice.switches:
        print(f"advice: {switch.as_dict()}")
    print(f"advice: {len(advice.switches)} model switches, {len(advice.caching)} caching opportunities")


if __name__ == "__main__":
    main()
