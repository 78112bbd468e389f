"""The familiar names read the engine's own records: no second set of numbers."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

import tokentrail as tt
from tokentrail.compat import (
    COST_PRESETS,
    CostEstimator,
    GlobalTokenTracker,
    MiddlewareConfig,
    RequestUsage,
    TokenCounter,
    TokenTrackingMiddleware,
    TokenTrackingMixin,
    create_token_tracker,
)
from tokentrail.testing.mock_llm import MockLLMServer


@pytest.fixture(scope="module")
def server() -> MockLLMServer:
    with MockLLMServer() as running:
        yield running


def openai_client(server: MockLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("openai"), api_key="test")


def ask(client: object, model: str = "gpt-4o") -> None:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])  # type: ignore[attr-defined]


def test_preset_rates_are_the_catalog_base_tier_prices() -> None:
    # base tier: a million-token prompt would hit claude-sonnet-4-5's long-context price instead
    estimator = CostEstimator()
    for name, model in COST_PRESETS.items():
        rate = estimator.get_rate(name)
        per_input = tt.price(tt.Usage(input_tokens=1000, output_tokens=0), model).total * 1000
        per_output = tt.price(tt.Usage(input_tokens=0, output_tokens=1000), model).total * 1000
        assert (rate.input_per_million, rate.output_per_million) == (per_input, per_output)


def test_set_rate_stays_inside_the_estimator() -> None:
    estimator = CostEstimator()
    estimator.set_rate("gpt-4o", input="1", output="2")
    assert estimator.estimate("gpt-4o", 1_000_000, 1_000_000) == Decimal(3)
    assert tt.price(tt.Usage(input_tokens=1_000_000, output_tokens=0), "gpt-4o").total == Decimal("2.5")


def test_estimate_of_an_unknown_model_raises_instead_of_zero() -> None:
    with pytest.raises(tt.UnknownModelError):
        CostEstimator().estimate("no-such-model-xyz", 10, 10)


def test_custom_costs_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTRAIL_PRICES__HOUSE_LLM__INPUT", "3")
    monkeypatch.setenv("TOKENTRAIL_PRICES__HOUSE_LLM__OUTPUT", "6")
    assert CostEstimator().estimate("house-llm", 1000, 1000) == Decimal("0.009")


def test_token_counter_counts_like_count_tokens() -> None:
    messages = [{"role": "user", "content": "hello there"}]
    assert TokenCounter("gpt-4o").count("hello there") == tt.count_tokens("hello there", "gpt-4o")
    assert TokenCounter("gpt-4o").count_messages(messages) == tt.count_tokens(messages, "gpt-4o")


def test_middleware_records_and_broadcasts(server: MockLLMServer) -> None:
    events: list[RequestUsage] = []

    class Collect:
        def broadcast(self, event: RequestUsage) -> None:
            events.append(event)

    llm = TokenTrackingMiddleware(openai_client(server), broadcaster=Collect())
    server.queue(input=100, output=10)
    ask(llm)
    assert [(e.model, e.input_tokens, e.output_tokens, e.cost) for e in events] == [
        ("gpt-4o", 100, 10, Decimal("0.00035"))
    ]
    assert llm.get_usage() == events
    summary = llm.get_summary()
    assert (summary.request_count, summary.total_tokens, summary.total_cost) == (1, 110, Decimal("0.00035"))


def test_disabled_middleware_records_nothing(server: MockLLMServer) -> None:
    llm = TokenTrackingMiddleware(openai_client(server), MiddlewareConfig(enabled=False))
    ask(llm)
    assert llm.get_summary().request_count == 0


def test_events_off_means_no_broadcast(server: MockLLMServer) -> None:
    events: list[RequestUsage] = []

    class Collect:
        def broadcast(self, event: RequestUsage) -> None:
            events.append(event)

    llm = TokenTrackingMiddleware(
        openai_client(server), MiddlewareConfig(emit_events=False), broadcaster=Collect()
    )
    ask(llm)
    assert events == [] and llm.get_summary().request_count == 1


def test_children_count_in_parents_and_not_the_reverse() -> None:
    root = create_token_tracker("root")
    child = create_token_tracker("child", parent_tracker=root)
    root.track(tt.Usage(input_tokens=10, output_tokens=1), "gpt-4o")
    child.track(tt.Usage(input_tokens=20, output_tokens=2), "gpt-4o")
    assert root.get_total_usage().input_tokens == 30
    assert root.get_total_usage(include_children=False).input_tokens == 10
    assert child.get_total_usage().input_tokens == 20


def test_provider_cost_is_preferred_also_for_a_model_we_cannot_price() -> None:
    agent = create_token_tracker("a")
    agent.track(tt.Usage(input_tokens=1000, output_tokens=0), "gpt-4o")  # ours: 0.0025
    agent.track(tt.Usage(input_tokens=1000, output_tokens=0), "gpt-4o", provider_cost="0.003")
    agent.track(tt.Usage(input_tokens=1000, output_tokens=0), "in-house-model", provider_cost="0.5")
    total = agent.get_total_usage()
    assert total.cost == Decimal("0.5055")
    assert total.computed_cost == Decimal("0.005")
    assert total.provider_cost == Decimal("0.503")
    assert total.unpriced_calls == 1


def test_breakdowns_can_be_turned_off() -> None:
    agent = create_token_tracker("a", track_per_model=False, track_per_provider=False)
    agent.track(tt.Usage(input_tokens=1, output_tokens=1), "gpt-4o")
    assert agent.get_model_breakdown() == {} and agent.get_provider_breakdown() == {}


def test_track_reads_a_provider_response() -> None:
    agent = create_token_tracker("a")
    response = {
        "model": "gpt-4o",
        "object": "chat.completion",
        "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55},
    }
    record = agent.track(response, provider="openai")
    assert (record.model, record.usage.input_tokens, record.usage.output_tokens) == ("gpt-4o", 50, 5)


def test_mixin_cost_breakdown_adds_up() -> None:
    class Agent(TokenTrackingMixin):
        tracking_tracker = tt.Tracker()
        name = "bot"

    agent = Agent()
    agent.track_response(tt.Usage(input_tokens=1000, output_tokens=100), model="gpt-4o", tool="search")
    breakdown = agent.get_cost_breakdown()
    assert breakdown["prompt"] == Decimal("0.0025")
    assert breakdown["completion"] == Decimal("0.001")
    assert breakdown["total"] == breakdown["prompt"] + breakdown["completion"]
    assert [entry["tool"] for entry in agent.get_usage_history()] == ["search"]
    assert agent.reset_tracking() == 1 and agent.get_cost() == 0


def test_statistics_without_budget() -> None:
    stats = GlobalTokenTracker(tt.Tracker()).get_statistics()
    assert stats["total_calls"] == 0 and stats["budget_utilization_percent"] is None


def test_budget_warns_at_ninety_percent() -> None:
    alerts: list[object] = []
    tracker = GlobalTokenTracker(budget_usd="1", budget_action="warn", on_alert=alerts.append)
    tracker.tracker.record(tt.Usage(input_tokens=360_000, output_tokens=0), "gpt-4o")  # $0.90
    assert [a.threshold for a in tracker.alerts] == [Decimal("0.9")]  # type: ignore[attr-defined]
    assert tracker.get_statistics()["budget_utilization_percent"] == pytest.approx(90.0)
    tracker.tracker.record(tt.Usage(input_tokens=40_000, output_tokens=0), "gpt-4o")  # $1.00
    assert [a.threshold for a in tracker.alerts] == [Decimal("0.9"), Decimal(1)]  # type: ignore[attr-defined]
    assert len(alerts) == 2


def test_middleware_events_reach_the_event_bus(server: MockLLMServer) -> None:
    from tokentrail.events import EventBus, RecordEvent

    bus = EventBus()
    seen: list[RecordEvent] = []
    bus.subscribe(seen.append, kinds="record")
    try:
        llm = TokenTrackingMiddleware(openai_client(server), bus=bus)
        server.queue(input=40, output=4)
        ask(llm)
        assert bus.flush(timeout=5)
    finally:
        bus.close()
    assert [(e.record.usage.input_tokens, e.record.model) for e in seen] == [(40, "gpt-4o")]


def test_log_usage_writes_one_line_per_request(
    server: MockLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm = TokenTrackingMiddleware(openai_client(server), MiddlewareConfig(log_usage=True, emit_events=False))
    server.queue(input=30, output=3)
    with caplog.at_level("INFO", logger="tokentrail"):
        ask(llm)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tokentrail call")]
    assert len(lines) == 1
    assert "input_tokens=30" in lines[0] and "model=gpt-4o" in lines[0]
