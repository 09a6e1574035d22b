"""Deterministic inference answers: the prompt echoed back, tokens counted as words. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_BATCH = 100
DEFAULT_MAX_TOKENS = 1024
# A fixed latency keeps answers byte-for-byte reproducible.
LATENCY_MS = 1


def completion(
    model: str, prompt: str, *, max_tokens: int | None = None, metadata: Any = None
) -> dict[str, Any]:
    """The I2/AD inference answer: `{"text", "tokens", "model", "latency"}` (+ `metadata`)."""
    words = f"echo: {prompt}".split()[: max_tokens or DEFAULT_MAX_TOKENS]
    answer: dict[str, Any] = {
        "text": " ".join(words),
        "tokens": len(words),
        "model": model,
        "latency": LATENCY_MS,
    }
    if metadata is not None:
        answer["metadata"] = metadata
    return answer


def accepted_requests(requests: Sequence[Any]) -> int:
    """How many batch items are usable: objects with a non-empty string `prompt`."""
    return sum(
        1
        for item in requests
        if isinstance(item, dict) and isinstance(item.get("prompt"), str) and item["prompt"]
    )


def batch_answer(batch_id: str, requests: Sequence[Any]) -> dict[str, Any]:
    """The AD batch answer: queued, with how many of the requests were accepted."""
    return {
        "batchId": batch_id,
        "status": "queued",
        "summary": {"total": len(requests), "accepted": accepted_requests(requests)},
    }
