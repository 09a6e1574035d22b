"""The parsers of the commands that look after stored data and keys: `replay`, `retry-dead`,
`purge`, `rotate-keys` and `keys`."""

from __future__ import annotations

import argparse

from service.commands.basics import DEFAULT_BATCH, MAX_BATCH


def add_requeue_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="queue stored events' deliveries again (a worker delivers them)"
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--event", metavar="ID", help="replay this one stored event (default: none; or --since)"
    )
    which.add_argument(
        "--since",
        metavar="TIME",
        help="replay every event received at or after this RFC 3339 time, oldest first "
        "(default: none; or --event)",
    )
    replay.add_argument(
        "--until",
        metavar="TIME",
        help="with --since: only events received before this RFC 3339 time (default: now)",
    )
    replay.add_argument(
        "--route",
        metavar="NAME",
        help="queue only to this enabled route "
        "(default: every enabled route the event's type matches)",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="only count what would be queued; change nothing (default: off)",
    )
    replay.set_defaults(run="service.commands.requeue:cmd_replay")

    retry = sub.add_parser(
        "retry-dead", help="make dead deliveries due again (a worker delivers them)"
    )
    retry.add_argument(
        "--route", metavar="NAME", help="only dead deliveries to this route (default: any route)"
    )
    retry.add_argument(
        "--job-id", metavar="ID", help="only deliveries of this LLMTune job (default: any job)"
    )
    retry.add_argument(
        "--dry-run",
        action="store_true",
        help="only count the dead deliveries that would be retried; change nothing (default: off)",
    )
    retry.set_defaults(run="service.commands.requeue:cmd_retry_dead")


def add_purge_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    purge = sub.add_parser(
        "purge",
        help="delete old events with their deliveries, attempts and inference runs (jobs are kept)",
        description="Delete events received longer ago than --older-than, oldest first, in "
        "short batches (safe while the service runs). Their deliveries, delivery attempts and "
        "inference runs go with them. An event with a delivery still to make (pending, in "
        "flight, retrying) is kept; dead and succeeded deliveries do not keep one. Jobs are "
        "never deleted: the job history stays. Each deleted event's dedup key is kept, so a "
        "replay of its body is still answered as a duplicate, until DEDUP_RETENTION_DAYS after "
        "the event was received; then this command deletes the key too.",
    )
    purge.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="delete events received longer ago than this: <n>d, <n>h or <n>m (days, hours, "
        "minutes), e.g. 90d (default: none, required)",
    )
    purge.add_argument(
        "--dry-run",
        action="store_true",
        help="only count what would be deleted and kept; delete nothing (default: off)",
    )
    purge.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"events per transaction, 1 to {MAX_BATCH} (default: %(default)s)",
    )
    purge.set_defaults(run="service.commands.purge:cmd_purge")


def add_rotate_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rotate = sub.add_parser(
        "rotate-keys",
        help="reseal stored bodies, headers, inference runs and job datasets under the first "
        "ENCRYPTION_KEYS key",
        description="Reseal every stored raw body, header list, inference prompt and output, and "
        "job dataset location that is not yet under the first key of ENCRYPTION_KEYS "
        "(including rows kept in clear before encryption was turned on), in short batches with "
        "progress; safe while the service runs, and resumable: run it again after an "
        "interruption. Then the older keys can be removed from ENCRYPTION_KEYS. Run it once "
        "every process has the new key list.",
    )
    rotate.add_argument(
        "--to-clear",
        action="store_true",
        help="write every row back in clear instead (to turn encryption at rest off; stop the "
        "services first) (default: off)",
    )
    rotate.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"rows per transaction, 1 to {MAX_BATCH} (default: %(default)s)",
    )
    rotate.set_defaults(run="service.commands.rotate_keys:cmd_rotate_keys")


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys", help="make signing and encryption keys (no database or service needed)"
    )
    actions = keys.add_subparsers(
        dest="action", required=True, help="generate (default: none, required)"
    )
    generate = actions.add_parser(
        "generate",
        help="print a new ed25519 key pair for an http route's v1a signatures, or (--hmac) a "
        "whsec_ secret for its v1 signatures, or (--encryption) a key for ENCRYPTION_KEYS",
        description="Print a new ed25519 key pair: the whsk_ private key (its 32-byte seed) goes "
        'into an http route\'s options with signing = "v1a" or "both"; the whpk_ public key goes '
        "to the destination's owner, who verifies the v1a signatures with it. With --hmac, "
        "print a whsec_ secret (base64 of 32 random bytes, the Standard Webhooks form) for the "
        'route\'s secret with signing = "v1" or "both"; the destination verifies with the same '
        "secret. With --encryption, print one AES-256 key (base64 of 32 random bytes) for "
        "ENCRYPTION_KEYS.",
    )
    kind = generate.add_mutually_exclusive_group()
    kind.add_argument(
        "--hmac",
        action="store_true",
        help="print a whsec_ secret for an http route's v1 signatures instead (default: off)",
    )
    kind.add_argument(
        "--encryption",
        action="store_true",
        help="print a key for ENCRYPTION_KEYS (encryption at rest) instead (default: off)",
    )
    generate.add_argument(
        "--json",
        action="store_true",
        help='print {"privateKey", "publicKey"} (or {"secret"}, {"encryptionKey"}) as one JSON '
        "object (default: TOML lines and a comment; the key alone with --encryption)",
    )
    generate.set_defaults(run="service.commands.keys:cmd_keys_generate")
