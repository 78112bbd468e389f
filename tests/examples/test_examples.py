"""Every example runs as a user would run it (a subprocess, in an empty directory) and prints the
figures worked out by hand in the comments below."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_is_covered() -> None:
    tested = {
        "middleware.py",
        "agent_trackers.py",
        "agent_mixin.py",
        "global_tracker.py",
        "interceptor_pipeline.py",
        "context_monitoring.py",
        "budget_manager.py",
        "budget_presets.py",
        "attribution_and_speed.py",
        "analytics_trends.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_middleware(tmp_path: Path) -> None:
    out = run("middleware.py", tmp_path)
    # gpt-4o-mini $0.15/$0.60 per M: 1200 in + 300 out = $0.00018 + $0.00018
    assert "event: gpt-4o-mini 1200+300 tokens, $0.00036" in out
    # custom cost $2/$8 per M: 1000 in + 500 out = $0.002 + $0.004
    assert "event: my-finetune 1000+500 tokens, $0.006" in out
    assert "request: provider=openai model=gpt-4o-mini tokens=1500 cost=$0.00036 timed=True at=UTC" in out
    assert "summary: requests=2 input=2200 output=800 total=3000 cost=$0.00636 duration_recorded=True" in out
    assert "preset claude-sonnet: input $3/M output $15/M" in out
    assert "preset gemini-flash: input $0.3/M output $2.5/M" in out


def test_agent_trackers(tmp_path: Path) -> None:
    out = run("agent_trackers.py", tmp_path)
    # claude-sonnet-4-5: 1000 uncached × $3 + 2000 cache reads × $0.30 + 400 out × $15 (per M)
    assert "researcher: calls=1 input=3000 output=400 reasoning=0 cache_read=2000 cost=$0.0096" in out
    # o4-mini $0.00308 + gpt-4o at the provider-reported $0.004 (ours: $0.0035)
    assert (
        "writer: calls=2 input=1800 output=600 reasoning=300 cache_read=0 cost=$0.00708 "
        "computed=$0.00658 provider_reported=$0.004" in out
    )
    assert "orchestrator: calls=4 input=5000 output=1050 reasoning=300 cache_read=2000 cost=$0.01674" in out
    assert "orchestrator alone: calls=1 cost=$0.00006" in out
    assert "provider anthropic: calls=1 cost=$0.0096" in out
    assert "provider openai: calls=3 cost=$0.00714" in out
    assert "saved 4 records to agents.json" in out
    assert "reset dropped 2 writer records; orchestrator now has 2 calls" in out
    assert (tmp_path / "agents.json").exists()


def test_agent_mixin(tmp_path: Path) -> None:
    out = run("agent_mixin.py", tmp_path)
    assert "usage: calls=2 input=3000 output=650" in out
    # gpt-4o 2000/400 = $0.009; acme-llm at the env rates $1/$4 per M: 1000/250 = $0.002
    assert "breakdown: prompt=$0.006 completion=$0.005 total=$0.011" in out
    assert "history: tool=web_search model=gpt-4o cost=$0.009" in out
    assert "history: tool=summarize model=acme-llm cost=$0.002" in out
    assert "reset_tracking dropped 2 calls; cost now $0" in out
    assert "count: 5" in out
    assert "count_messages: 12" in out
    assert "estimate gpt-4o 10k in / 2k out: $0.045" in out
    assert "'input_per_million': '1', 'output_per_million': '4'" in out
    assert "'input_per_million': '0.4', 'output_per_million': '1.2'" in out


def test_global_tracker(tmp_path: Path) -> None:
    out = run("global_tracker.py", tmp_path)
    assert "ALERT global: 90% of $0.01 spent" in out
    assert "ALERT global: 105% of $0.01 spent" in out
    assert "refused: global spent $0.0105 of $0.01" in out
    assert (
        "statistics: calls=2 tokens=2700 cost=$0.0105 avg_tokens=1350.0 avg_cost=$0.00525 "
        "budget_utilization_percent=105.0" in out
    )
    assert "by agent researcher: $0.009" in out
    assert "85.7%" in out and "14.3%" in out  # the report's share of cost per agent
    assert "export_to_json: 2 records, total $0.0105" in out
    assert "chart: cost_by_agent.png written=True" in out
    assert "POST /research -> 402 budget=global" in out
    assert (tmp_path / "usage.json").exists()


def test_interceptor_pipeline(tmp_path: Path) -> None:
    out = run("interceptor_pipeline.py", tmp_path)
    # claude-3-5-haiku $0.80/$4 per M
    assert "user alice model claude-3-5-haiku-latest: calls=1 tokens=1200 cost=$0.0016" in out
    assert "user bob model claude-3-5-haiku-latest: calls=1 tokens=600 cost=$0.0008" in out


def test_context_monitoring(tmp_path: Path) -> None:
    out = run("context_monitoring.py", tmp_path)
    assert "tokens=117038 exact=True window=128000 utilization=91.4%" in out
    assert "threshold 90%" in out
    assert "recommend summarize_older_turns: saves 70209 tokens" in out


def test_budget_manager(tmp_path: Path) -> None:
    out = run("budget_manager.py", tmp_path)
    assert out.count("call ok") == 3
    assert "alert hourly-tokens: threshold 90% (90% used)" in out
    assert "refused by hourly-tokens: spent 4500 of 5000" in out
    assert "status daily-usd [daily]: $0.00135 = 3%" in out
    assert "status session-usd [session]: $0.00135 = 7%" in out
    assert "advice: 1 model switches, 0 caching opportunities" in out


def test_budget_presets(tmp_path: Path) -> None:
    out = run("budget_presets.py", tmp_path)
    assert "development: development/daily $10 per daily action=warn" in out
    assert "production: production/session $5 per session action=block" in out
    assert "enterprise: enterprise/monthly $10000 per monthly action=block" in out
    # gpt-4o 100k/20k = $0.25 + $0.20, against production × 0.1
    assert "in use: production/session spent $0.45 of $0.5" in out


def test_attribution_and_speed(tmp_path: Path) -> None:
    out = run("attribution_and_speed.py", tmp_path)
    assert "by session s-1: calls=2 output=500 cost=$0.0006" in out
    assert "by user bob: calls=1 output=300 cost=$0.00033" in out
    assert "by agent coder: calls=2 output=700 cost=$0.00072" in out
    assert "measured: timed_calls=3 tokens_per_second>0=True" in out
    assert "batch: tokens_per_second=250.0 average_duration_ms=2000" in out


def test_analytics_trends(tmp_path: Path) -> None:
    out = run("analytics_trends.py", tmp_path)
    # gpt-4o 10k/1k = $0.035 a call; claude-sonnet-4-5 4k/1k = $0.027
    assert "cost by model gpt-4o: $1.225" in out
    assert "cost by provider anthropic: $0.378" in out
    assert "cost by day: first 2026-03-01 $0.097, last 2026-03-14 $0.132" in out
    assert "week of 2026-03-09: calls=24 cost=$0.792 change=+0.078" in out
    assert "forecast March: spent $1.603" in out
