"""The LiteLLM callback's former home: it lives in `tokentrail.integrations.litellm` now.

Importing this module imports litellm (it is not a dependency of tokentrail).
"""

from __future__ import annotations

from tokentrail.integrations.litellm import TokentrailLogger, litellm_callback

__all__ = ["TokentrailLogger", "litellm_callback"]
