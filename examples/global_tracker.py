"""A global tracker with a budget: warning at 90 %, exceeded alert, refusal, statistics, a cost report
with percentages, export_to_json, a cost-by-agent chart and a FastAPI endpoint answering 402.

Runs offline: the real openai SDK talks to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
from fastapi import FastAPI
from fastapi.testclient import TestClient

import tokentrail as tt
from tokentrail.budgets.fastapi import BudgetMiddleware
from tokentrail.compat import get_token_tracker
from tokentrail.testing.mock_llm import MockLLMServer


def main() -> None:
    tracker = get_token_tracker(
        budget_usd="0.01",
        on_alert=lambda alert: print(
            f"ALERT {alert.budget}: {alert.percent:.0f}% of ${alert.limit_usd} spent"
        ),
    )
    with MockLLMServer() as server:
        client = tt.wrap(openai.OpenAI(base_url=server.url("openai"), api_key="test"), tracker.tracker)
        server.queue(input=2000, output=400)  # $0.009: 90 % of the budget
        with tt.scope(agent="researcher"):
            client.chat.completions.create(
                model="gpt-4o", max_tokens=500, messages=[{"role": "user", "content": "hi"}]
            )
        server.queue(input=200, output=100)  # $0.0015 more: over the limit
        with tt.scope(agent="writer"):
            client.chat.completions.create(
                model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        try:
            client.chat.completions.create(
                model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        except tt.BudgetExceeded as exc:
            print(f"refused: {exc.budget} spent ${exc.spent} of ${exc.limit}")

    stats = tracker.get_statistics()
    print(
        f"statistics: calls={stats['total_calls']} tokens={stats['total_tokens']} cost=${stats['total_cost']} "
        f"avg_tokens={stats['average_tokens_per_call']} avg_cost=${stats['average_cost_per_call']} "
        f"budget_utilization_percent={stats['budget_utilization_percent']:.1f}"
    )
    for agent, row in stats["by_agent"].items():
        print(f"by agent {agent}: ${row.cost}")
    for model, row in stats["by_model"].items():
        print(f"by model {model}: ${row.cost}")

    print(tracker.report(width=100))
    exported = json.loads(tracker.export_to_json(Path("usage.json")).read_text())
    print(f"export_to_json: {len(exported['records'])} records, total ${exported['totals']['cost']}")
    chart = Path(tracker.plot_cost_by_agent(Path("cost_by_agent.png")))
    print(f"chart: {chart.name} written={chart.stat().st_size > 0}")

    app = FastAPI()
    assert tracker.tracker.budgets is not None
    app.add_middleware(BudgetMiddleware, manager=tracker.tracker.budgets)

    @app.post("/research")
    def research() -> dict[str, str]:
        return {"answer": "…"}

    response = TestClient(app).post("/research")
    print(f"POST /research -> {response.status_code} budget={response.json().get('budget')}")


if __name__ == "__main__":
    main()
