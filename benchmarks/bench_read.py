"""Reading usage from a JSON body: tokentrail (compiled catalog extractors) vs its hand-written readers vs
genai-prices' `extract_usage`, same run, same bodies (OpenAI chat, OpenAI Responses, Anthropic message).

Goal (issue 17): ≤ 1.2× today's hand-written readers, ≥ 20× faster than genai-prices' `extract_usage`.

- tokentrail: `usage_from_response(body, provider)`, the public call, timed whole (the batch-result check,
  the body's shape, the readers kept for this provider name and shape, the compiled extractor, the
  `Usage`; run by the optional C reader `_fastread` where it is built, as the header says, else in
  Python: run with TOKENTRAIL_NO_EXTENSION=1 for the pure-Python figures); "capture" is `capture(body, provider)`, which also builds the price context and the
  `Captured`; "reader alone" is the compiled extractor function by itself (the body read into a `Usage`).
- hand-written: the functions `usage_from_response` called before (`openai.extract_fields`,
  `anthropic.extract`), called directly (no detection: this favours them).
- genai-prices: the public `genai_prices.extract_usage(body, provider_id=…, api_flavor=…)` users call (the
  provider found by id, the extractor run, the model looked up; its lookups are cached after the first
  call, as in a long-running process), and, for reference, its extractor alone
  (`Provider.extract_usage(body, api_flavor=…)`).

`--json` decodes each body from its JSON text first (as `response.json()` or the gateway gives it: keys that
are not the interned strings of Python literals). Each figure is the best of 40 short windows of the mean per call (the minimum filters scheduler noise on a
shared machine; short windows give it more chances to find a quiet one).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import genai_prices
from genai_prices.data import providers

from _timing import machine, per_call_us
from tokentrail.adapters import _fast, anthropic, capture, openai, usage_from_response
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


def _best(fn: Callable[[], object], number: int = 2000) -> float:
    return per_call_us(fn, number=number, repeat=40)


def main() -> None:
    decoded = "--json" in sys.argv[1:]
    reader = "compiled (C)" if _fast.extension() is not None else "pure Python"
    print(
        f"# reading usage from a JSON body ({machine()}, genai-prices {genai_prices.__version__};"
        f" tokentrail's reader: {reader}; bodies: {'decoded from JSON text' if decoded else 'Python literals'})"
    )
    readers = mapped_readers()  # the catalog's extractors loaded once, as on a first call
    by_id = {p.id: p for p in providers}
    for name, body, provider, flavor, hand in CASES:
        if decoded:
            body = json.loads(json.dumps(body))
        ours = usage_from_response(body, provider)
        assert ours == hand(body, provider).usage == capture(body, provider).usage, name
        theirs_usage = genai_prices.extract_usage(body, provider_id=provider, api_flavor=flavor).usage
        assert (ours.input_tokens, ours.output_tokens) == (
            theirs_usage.input_tokens,
            theirs_usage.output_tokens,
        )
        compiled = readers.compiled(provider, flavor)
        assert compiled is not None, name
        public = _best(lambda b=body, p=provider: usage_from_response(b, p))
        captured = _best(lambda b=body, p=provider: capture(b, p))
        alone = _best(lambda b=body, r=compiled.read: r(b, 0))
        own = _best(lambda b=body, p=provider, h=hand: h(b, p))
        theirs = _best(
            lambda b=body, p=provider, f=flavor: genai_prices.extract_usage(b, provider_id=p, api_flavor=f),
            number=500,
        )
        extractor = by_id[provider]
        theirs_alone = _best(
            lambda b=body, e=extractor, f=flavor: e.extract_usage(b, api_flavor=f), number=500
        )
        print(
            f"{name:18} tokentrail {public:6.2f} µs (capture {captured:5.2f}, reader alone {alone:5.2f})"
            f" | hand-written {own:6.2f} µs"
            f" ({public / own:.2f}x) | genai-prices extract_usage {theirs:6.2f} µs ({theirs / public:.1f}x"
            f" slower; its extractor alone {theirs_alone:6.2f} µs, {theirs_alone / public:.1f}x)"
        )


if __name__ == "__main__":
    main()
