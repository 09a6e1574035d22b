"""A fake LLMTune: a real HTTP server that tests and `make demo` use in place of the platform.

It accepts fine-tune submissions and inference calls under `/v1`, moves each job through its
lifecycle on a clock, and posts signed W3 webhooks for every step, misbehaving on request
(duplicates, reordering, dropped events, injected API errors, slowness) via `/_fake/switches`.
It imports only the pure `service.webhooks` and `service.clock` of the service, never its
HTTP, store, ingest or bootstrap layers.
"""

from service.fake_llmtune.app import create_fake_app, fake_state
from service.fake_llmtune.state import FakeConfig, FakeLLMTune
from service.fake_llmtune.switches import Switches

__all__ = ["FakeConfig", "FakeLLMTune", "Switches", "create_fake_app", "fake_state"]
