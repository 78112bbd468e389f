"""OTLP ingest: OpenTelemetry spans from any language become tokentrail records.

- `spans`: the span reader (GenAI semantic conventions, OpenInference, Vercel AI SDK) → `Usage` and
  attribution; pure functions.
- `otlp`: OTLP/HTTP bodies (protobuf, JSON, gzip) → `SpanData`.
- `records`: `Ingestor`, recording each call span once through the tracker.
- `app`: `otlp_app(tracker_or_store_url)`, the `POST /v1/traces` ASGI app (mounted by `tokentrail serve`,
  served alone by `tokentrail collect`: `collector_app`).

Nothing here is imported by `import tokentrail`.
"""
