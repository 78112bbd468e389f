"""Loading the encoders and counting never opens a socket."""

from __future__ import annotations

import socket

import pytest

from tests.tokens.reference import corpus
from tokentrail.tokens import ContextMonitor, count, count_tokens, encodings


class NetworkUsed(AssertionError):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkUsed("a socket was opened")


def test_loading_and_counting_open_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings, "_encoders", {})
    monkeypatch.setattr(socket, "socket", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    for text in corpus().values():
        assert count_tokens(text, "gpt-4o") > 0
        assert count_tokens(text, "gpt-4") > 0
        assert count(text, "claude-sonnet-4-5").tokens > 0
    messages = [{"role": "user", "content": "hello"}]
    assert count(messages, "gemini-2.5-pro").tokens > 0
    assert ContextMonitor().check(messages, "gpt-4o").context_window == 128_000
