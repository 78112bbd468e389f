"""Context-size monitoring with compression recommendations: how full the window is before a call,
warnings at thresholds, and what summarizing or switching models would save.
"""

from __future__ import annotations

import tokentrail as tt


def main() -> None:
    monitor = tt.ContextMonitor(thresholds=(0.75, 0.9), keep_recent_messages=2)
    filler = "The quarterly report lists revenue, costs and margins for every region. " * 3000
    messages = [
        {"role": "system", "content": "You are a careful analyst."},
        {"role": "user", "content": filler},
        {"role": "assistant", "content": filler},
        {"role": "user", "content": filler},
        {"role": "user", "content": "Summarize the trend."},
    ]
    report = monitor.check(messages, "gpt-4o", conversation="analysis")
    print(
        f"tokens={report.tokens} exact={report.exact} window={report.context_window} "
        f"utilization={report.utilization:.1%}"
    )
    for warning in report.warnings:
        print(f"warning: {warning}")
    for recommendation in report.recommendations:
        print(
            f"recommend {recommendation.action}: saves {recommendation.tokens_saved} tokens "
            f"(${recommendation.usd_saved}) {recommendation.target_model or ''}".rstrip()
        )


if __name__ == "__main__":
    main()
