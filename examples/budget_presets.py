"""Development, production and enterprise budget configurations (presets), and one in use."""

from __future__ import annotations

import tokentrail as tt
from tokentrail.budgets.config import preset


def main() -> None:
    for name in ("development", "production", "enterprise"):
        for budget in preset(name):
            limit = (
                f"${budget.limit_usd}" if budget.limit_usd is not None else f"{budget.limit_tokens} tokens"
            )
            print(f"{name}: {budget.name} {limit} per {budget.window} action={budget.action}")

    # production at a tenth of the dollar limits, as a small team might start
    tracker = tt.Tracker(budgets=preset("production", scale="0.1"))
    with tt.scope(agent="triage", session="s-1"):
        tracker.record(tt.Usage(input_tokens=100_000, output_tokens=20_000), "gpt-4o")
    assert tracker.budgets is not None
    for status in tracker.budget_status():
        print(f"in use: {status.budget} spent ${status.spent_usd} of ${status.limit_usd}")


if __name__ == "__main__":
    main()
