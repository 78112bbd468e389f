"""OTLP ingest: OpenTelemetry spans from any language become tokentrail records.

- `spans`: the span reader (GenAI semantic conventions, OpenInference, Vercel AI SDK) → `Usage`.
"""
