"""`fake-llmtune`: run the fake LLMTune (for tests and `make demo`) with uvicorn.

It reads no receiver settings: everything comes from the options.
"""

from __future__ import annotations

import argparse
import signal
import sys

import uvicorn

from service.fake_llmtune import FakeConfig, Switches, create_fake_app
from service.fake_llmtune.switches import SwitchError, apply_patch
from service.logs import configure_logging


def fake_config(args: argparse.Namespace) -> FakeConfig:
    """The fake's configuration from the parsed options; SwitchError on a bad switch."""
    switches = apply_patch(
        Switches(),
        {
            "duplicates": args.duplicates,
            "reorder": args.reorder,
            "drop": list(args.drop or []),
            "fail_status": args.fail_status,
            "fail_times": args.fail_times,
            "flat_errors": args.flat_errors,
            "slow_seconds": args.slow_seconds,
        },
    )
    return FakeConfig(
        secret=args.secret,
        step_seconds=args.step_seconds,
        workspace_url=args.workspace_url,
        api_key=args.api_key,
        switches=switches,
        webhook_attempts=args.webhook_attempts,
        retry_base_seconds=args.retry_base_seconds,
    )


def cmd_fake_llmtune(args: argparse.Namespace) -> int:
    """Serve the fake LLMTune until SIGTERM or Ctrl-C."""
    try:
        config = fake_config(args)
    except SwitchError as exc:
        print(f"llmtune-receiver: fake-llmtune: {exc}", file=sys.stderr)
        return 2
    if config.webhook_attempts < 1 or config.retry_base_seconds < 0:
        print(
            "llmtune-receiver: fake-llmtune: --webhook-attempts must be at least 1 and "
            "--retry-base-seconds 0 or more",
            file=sys.stderr,
        )
        return 2
    configure_logging("info", "auto")
    print(
        f"llmtune-receiver: fake LLMTune API at http://{args.host}:{args.port}/v1, "
        f"controls at /_fake",
        file=sys.stderr,
    )
    # As in `serve`: uvicorn re-raises SIGTERM at itself after its graceful shutdown.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_fake_app(config),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0
