"""Deliveries shaped and signed exactly as each LLMTune docs version describes. Pure.

Used by `send-test-event`, and by tests as the reference for what the receiver must accept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from service.timestamps import rfc3339
from service.webhooks.verify import sign

Format = Literal["w1", "w2", "w3"]
FORMATS: tuple[Format, ...] = ("w3", "w2", "w1")
# The events of one job's life, in the order LLMTune sends them (`send-test-event --lifecycle`).
LIFECYCLE = ("training.started", "training.completed", "model.deployed")
SAMPLE_MODEL = "meta-llama/Llama-3.3-70B-Instruct"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A body and the headers to post it with."""

    body: bytes
    headers: dict[str, str]


def _data(fmt: Format, event: str, job_id: str) -> dict[str, Any]:
    if fmt == "w1":
        data: dict[str, Any] = {"job_id": job_id, "model_id": "meta/llama-3.1-8b"}
    elif fmt == "w2":
        data = {"jobId": job_id, "baseModel": SAMPLE_MODEL}
    else:
        data = {"jobId": job_id, "modelName": SAMPLE_MODEL}
    if event == "training.completed":
        data["metrics"] = {"loss": 1.12, "tokens": 3250000, "duration_seconds": 1450}
        if fmt == "w2":
            data["artifact"] = "ionet-finetune-model-id"
    elif event == "training.failed":
        data["error"] = "sample failure sent by llmtune-receiver send-test-event"
    elif event == "model.deployed":
        data.update({"modelId": SAMPLE_MODEL, "deploymentId": f"deploy-{job_id}"})
    return data


def w1_event_id(job_id: str, event: str) -> str:
    """W1's `evt_…` id: one per event of a job, the same when that event is sent again."""
    return "evt_" + hashlib.sha256(f"{job_id}\n{event}".encode()).hexdigest()[:20]


def sample_body(fmt: Format, event: str, job_id: str, now: datetime) -> dict[str, Any]:
    """A body in the envelope of docs version `fmt` (W1 `type`/`created_at`, W2, W3)."""
    data = _data(fmt, event, job_id)
    if fmt == "w1":
        return {
            "id": w1_event_id(job_id, event),
            "type": event,
            "workspace_id": "ws_test",
            "data": data,
            "created_at": rfc3339(now, digits=0),
        }
    if fmt == "w2":
        return {"event": event, "data": data, "deliveredAt": rfc3339(now, digits=0)}
    return {"event": event, "data": data, "timestamp": rfc3339(now, digits=3)}


def signed_delivery(fmt: Format, body: bytes, secret: str, event: str) -> Delivery:
    """Headers as each version sends them, signed with the whole secret string as the key."""
    signature = sign(secret, body)
    headers = {"Content-Type": "application/json"}
    if fmt == "w3":
        headers |= {"X-Webhook-Signature": signature, "X-Webhook-Event": event}
    elif fmt == "w2":
        headers["X-LLMTune-Signature"] = signature
    else:
        headers["X-LLMTune-Signature"] = f"sha256={signature}"
    return Delivery(body=body, headers=headers)


def sample_delivery(fmt: Format, event: str, secret: str, job_id: str, now: datetime) -> Delivery:
    """A complete signed sample delivery."""
    body = orjson.dumps(sample_body(fmt, event, job_id, now))
    return signed_delivery(fmt, body, secret, event)
