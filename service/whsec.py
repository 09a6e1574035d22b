"""The `whsec_` marker that starts a webhook secret, in LLMTune's format and in Standard Webhooks'
alike: the secrets we verify with and those we sign forwarded events with. Pure and imports
nothing, so every floor may use it.
"""

from __future__ import annotations

WHSEC_PREFIX = "whsec_"
