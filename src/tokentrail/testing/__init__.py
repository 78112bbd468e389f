"""Testing helpers: a local mock LLM server speaking the providers' wire formats (`mock_llm`), a
fresh tracker installed for the span of a test with assertions on what it recorded (`recording`),
and the `tokentrail_tracker` pytest fixture (`pytest_plugin`, enabled by the package's entry point).

    from tokentrail.testing import assert_recorded, recording
"""

from tokentrail.testing.recording import assert_all_priced, assert_recorded, recorded_calls, recording

__all__ = ["assert_all_priced", "assert_recorded", "recorded_calls", "recording"]
