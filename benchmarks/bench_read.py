"""Reading usage from a JSON body: the compiled catalog extractors vs tokentrail's hand-written readers vs
genai-prices' own `extract_usage`, same run, same bodies (OpenAI chat, OpenAI Responses, Anthropic message).

Goal (issue 17): compiled readers ≤ 1.2× the hand-written ones, ≥ 20× faster than `extract_usage`.
`usage_from_response` is timed whole (provider detection, shape, reading, Captured); the hand readers are
the functions it called before (openai.extract_fields, anthropic.extract).
"""

from __future__ import annotations

import warnings

from _timing import machine, per_call_us
from tokentrail.adapters import anthropic, openai, usage_from_response
from tokentrail.adapters._mapped import mapped_readers

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1735000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
}
RESPONSES = {
    "id": "resp_1",
    "object": "response",
    "model": "gpt-4.1",
    "status": "completed",
    "output": [{"type": "message", "role": "assistant", "content": []}],
    "usage": {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 100},
        "total_tokens": 1500,
    },
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [],
    "usage": {
        "input_tokens": 20,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 400,
        "service_tier": "standard",
    },
}
CASES = [
    ("openai chat", CHAT, "openai", "chat", openai.extract_fields),
    ("openai responses", RESPONSES, "openai", "responses", openai.extract_fields),
    ("anthropic message", MESSAGE, "anthropic", "default", anthropic.extract),
]


def main() -> None:
    import genai_prices
    from genai_prices.data import providers

    print(f"# reading usage from a JSON body ({machine()}, genai-prices {genai_prices.__version__})")
    mapped_readers()  # the snapshot's extractors loaded once, as on a first call
    for name, body, provider, flavor, hand in CASES:
        assert usage_from_response(body, provider) == hand(body, provider).usage, name
        extractor = next(p for p in providers if p.id == provider)
        mapped = per_call_us(lambda b=body, p=provider: usage_from_response(b, p))
        own = per_call_us(lambda b=body, p=provider, h=hand: h(b, p))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = per_call_us(
                lambda b=body, e=extractor, f=flavor: e.extract_usage(b, api_flavor=f), number=5000
            )
        print(
            f"{name:18} compiled {mapped:6.2f} µs | hand-written {own:6.2f} µs ({mapped / own:.2f}x) |"
            f" genai-prices extract_usage {theirs:7.2f} µs ({theirs / mapped:.0f}x slower)"
        )


if __name__ == "__main__":
    main()
