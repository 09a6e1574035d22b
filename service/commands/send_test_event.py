"""`send-test-event`: post deliveries signed and shaped as each LLMTune docs version says."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime

import httpx

from service.commands.basics import settings_or_exit
from service.links import webhook_target
from service.webhooks.samples import LIFECYCLE, Delivery, sample_delivery


def _secret_or_none(given: str | None) -> str | None:
    if given is not None:
        return given
    configured = settings_or_exit().webhook_secrets
    if not configured:
        print("llmtune-receiver: give --secret (no WEBHOOK_SECRETS configured)", file=sys.stderr)
        return None
    return configured[0].get_secret_value()


def _post(url: str, delivery: Delivery) -> bool:
    """Post one delivery, print the answer; True on 2xx."""
    try:
        response = httpx.post(url, content=delivery.body, headers=delivery.headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"llmtune-receiver: could not deliver to {url}: {exc}", file=sys.stderr)
        return False
    print(f"{response.status_code} {response.text}")
    return response.is_success


def cmd_send_test_event(args: argparse.Namespace) -> int:
    """Sign and post deliveries as LLMTune would; exit 0 only when every answer is 2xx."""
    secret = _secret_or_none(args.secret)
    if secret is None:
        return 2
    job_id = args.job_id or f"job-{uuid.uuid4()}"
    names = LIFECYCLE if args.lifecycle else (args.event,)
    url = webhook_target(args.url)
    for name in names:
        delivery = sample_delivery(args.format, name, secret, job_id, datetime.now(UTC))
        if args.lifecycle:
            print(f"{name} ", end="")
        if not _post(url, delivery):
            return 1
    return 0
