"""A usage carrying every count a `Usage` has (each non-zero), for store round trips and migrations."""

from __future__ import annotations

import tokentrail as tt
from tokentrail._types import TOKEN_FIELDS

# The counts a Usage carries since SQLite schema v7 / Postgres v3; a ledger from before holds none.
NEW_COUNTS = TOKEN_FIELDS[TOKEN_FIELDS.index("requests") + 1 :]

EVERY_UNIT = tt.Usage(
    input_tokens=9000,
    output_tokens=900,
    cache_read_tokens=3000,
    cache_write_tokens=500,
    cache_write_1h_tokens=100,
    reasoning_tokens=200,
    input_audio_tokens=300,
    cache_audio_read_tokens=30,
    output_audio_tokens=40,
    input_image_tokens=400,
    cache_image_read_tokens=20,
    output_image_tokens=50,
    input_video_tokens=600,
    cache_video_read_tokens=60,
    output_video_tokens=70,
    output_citation_tokens=80,
    web_searches=2,
    requests=1,
    input_characters=12_345,
    input_text_messages=7,
    audio_ms=95_500,
    input_audio_ms=60_250,
    output_audio_ms=35_000,
    input_document_pages=12,
    input_annotated_document_pages=5,
    input_pixels=2_073_600,
    storage_searches=3,
    code_executions=4,
    social_searches=5,
    rerank_searches=6,
)
