"""OTLP ingest tests: the endpoint served by uvicorn on a free port, driven by real exporters over TCP."""

from __future__ import annotations

from tests.asgi_server import Served, serve

__all__ = ["Served", "serve"]
