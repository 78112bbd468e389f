"""Offline token counting (exact for OpenAI models, calibrated estimates otherwise), model limits and
context-window monitoring. tiktoken is imported on first count, not with tokentrail."""

from tokentrail.tokens.context import (
    ContextMonitor,
    ContextReport,
    ContextWarning,
    ConversationState,
    Recommendation,
)
from tokentrail.tokens.count import TokenCount, count, count_tokens
from tokentrail.tokens.drift import DriftRow, drift
from tokentrail.tokens.encodings import IntegrityError, encoding_name_for_model, get_encoding
from tokentrail.tokens.estimate import estimate_text_tokens, family_for_model
from tokentrail.tokens.images import image_size, image_tokens
from tokentrail.tokens.limits import (
    ModelLimits,
    clear_model_limits,
    context_window,
    model_limits,
    set_model_limits,
)

__all__ = [
    "ContextMonitor",
    "ContextReport",
    "ContextWarning",
    "ConversationState",
    "DriftRow",
    "IntegrityError",
    "ModelLimits",
    "Recommendation",
    "TokenCount",
    "clear_model_limits",
    "context_window",
    "count",
    "count_tokens",
    "drift",
    "encoding_name_for_model",
    "estimate_text_tokens",
    "family_for_model",
    "get_encoding",
    "image_size",
    "image_tokens",
    "model_limits",
    "set_model_limits",
]
