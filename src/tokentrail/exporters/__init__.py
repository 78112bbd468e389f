"""Exporters: put tokentrail's numbers where operators already look.

`logging` needs only the standard library; `prometheus` and `otel` import their optional dependencies
(extras `tokentrail[prometheus]`, `tokentrail[otel]`) only when those modules are imported.
"""

from __future__ import annotations

from tokentrail.exporters.logging import LoggingSink, log_summary

__all__ = ["LoggingSink", "log_summary"]
