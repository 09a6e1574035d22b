"""The `http` handler: POSTs the normalized event to the operator's own URL, signed the Standard
Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`): `signing = "v1"` (the
default: HMAC with `secret`), `"v1a"` (ed25519 with `private_key`, so the destination verifies with
the public key alone) or `"both"` (`v1,... v1a,...` in the one header, for a destination moving
from one to the other). A key the chosen signing does not use is refused, not ignored.

The URL comes from configuration, but its DNS does not, so the host is resolved and, unless the
route says `allow_private = true`, refused when any address is not public. The request then goes
to a checked address only, with SNI, the certificate check and the `Host` header for the original
hostname, over a connection kept alive per destination (`outbound.py` does all of this). A route
may name `ca_file`, a PEM bundle of the only CAs its destination's certificate may chain to (an
internal service with a private CA). Redirects are not followed: the new host would escape the
check. This module must never put the secret or the private key in an error or a log.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

import httpx
import orjson
from pydantic import Field
from yarl import URL

from service.handlers.base import (
    MAX_ERROR_TEXT,
    Delivery,
    Fail,
    HandlerDeps,
    Options,
    OptionsError,
    Outcome,
    Retry,
    event_document,
    outcome_for_status,
    validated,
)
from service.handlers.outbound import (
    USER_AGENT,
    Answer,
    NoAddress,
    Refused,
    SendError,
    tls_context,
)
from service.handlers.signing import (
    decode_private_key,
    decode_secret,
    public_key_for,
    sign,
    sign_ed25519,
)

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 120.0
PREVIEW_BYTES = 2048  # of an error answer; a hostile endpoint may send gigabytes
Signing = Literal["v1", "v1a", "both"]
SIGNINGS: tuple[Signing, ...] = get_args(Signing)


class HttpOptions(Options):
    """The `http` handler's options (`url` and the keys are checked further by `from_options`)."""

    must: ClassVar[Mapping[str, str]] = {
        "url": "must be a string",
        "allow_private": "must be true or false",
        "signing": 'must be "v1", "v1a" or "both"',
        "secret": "must be a string",
        "private_key": "must be a string",
        "timeout": "must be a number of seconds",
        "ca_file": "must be the path of a PEM file",
        "timeout.range": f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds",
    }
    url: str
    allow_private: bool = False
    signing: Signing = "v1"
    secret: str | None = Field(None, repr=False)
    private_key: str | None = Field(None, repr=False)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=MAX_TIMEOUT)
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class HttpForwardHandler:
    """Forwards each delivery's event document to one URL."""

    name: ClassVar[str] = "http"

    url: httpx.URL
    deps: HandlerDeps = field(repr=False)
    secret: str | None = field(default=None, repr=False)  # `whsec_`, for `v1`
    private_key: str | None = field(default=None, repr=False)  # `whsk_`, for `v1a`
    signing: Signing = "v1"
    allow_private: bool = False
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None
    _target: URL = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # What is dialled: the configured URL without its fragment, already percent-encoded.
        target = URL(str(self.url.copy_with(fragment=None)), encoded=True)
        object.__setattr__(self, "_target", target)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], deps: HandlerDeps) -> HttpForwardHandler:
        """Validate the route's options (`OptionsError` names the option) and build the handler."""
        found = validated(HttpOptions, options)
        url = _parse_url(found.url, allow_private=found.allow_private)
        return cls(
            url=url,
            deps=deps,
            secret=_check_key(found, "secret", decode_secret, uses="v1"),
            private_key=_check_key(found, "private_key", decode_private_key, uses="v1a"),
            signing=found.signing,
            allow_private=found.allow_private,
            timeout=found.timeout,
            ca_file=_check_ca_file(found.ca_file, url),
        )

    async def handle(self, delivery: Delivery) -> Outcome:
        """Resolve, check, sign and POST; transport trouble is `Retry`, never an exception."""
        body = orjson.dumps(event_document(delivery))
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.deps.outbound.post(
                    self._target,
                    body=body,
                    headers=self._headers(delivery.id, body),
                    time_limit=self.timeout,
                    limit=PREVIEW_BYTES,
                    allow_private=self.allow_private,
                    ca_file=self.ca_file,
                )
        except Refused:
            return Fail(f"refused: {self.url.host} resolves to a private address")
        except NoAddress:
            return Retry(f"{self.url.host} resolves to no address")
        except TimeoutError:  # before OSError: TimeoutError is one
            return Retry(f"TimeoutError: no answer within {self.timeout:g} s")
        except SendError as exc:
            return Retry(str(exc)[:MAX_ERROR_TEXT])
        except OSError as exc:  # name resolution
            return Retry(_error_text(exc))
        return self._outcome(answer)

    @property
    def public_key(self) -> str | None:
        """The `whpk_` key that verifies this route's `v1a` signatures; None without `v1a`."""
        return None if self.private_key is None else public_key_for(self.private_key)

    def _headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        timestamp = math.floor(self.deps.clock.now().timestamp())
        return {
            "host": self.url.netloc.decode("ascii"),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self._signatures(msg_id, timestamp, body),
        }

    def _signatures(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` value: `v1,...`, `v1a,...`, or both (space-separated)."""
        values = []
        if self.secret is not None:
            values.append(sign(self.secret, msg_id, timestamp, body))
        if self.private_key is not None:
            values.append(sign_ed25519(self.private_key, msg_id, timestamp, body))
        return " ".join(values)

    def _outcome(self, answer: Answer) -> Outcome:
        status = answer.status
        if 300 <= status < 400:
            target = _redirect_host(self.url, answer.headers.get("location"))
            return Fail(f"HTTP {status}: redirect to {target} not followed (update the url)")
        text = "" if 200 <= status < 300 else _preview(answer.body)
        return outcome_for_status(
            status,
            body=text,
            retry_after=answer.headers.get("retry-after"),
            now=self.deps.clock.now(),
        )


def _parse_url(value: str, *, allow_private: bool) -> httpx.URL:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise OptionsError(f"url: not a valid URL ({exc})") from None
    if url.scheme == "http" and not allow_private:
        raise OptionsError("url: must be https:// (http:// only with allow_private = true)")
    if url.scheme not in ("http", "https"):
        raise OptionsError("url: must be an https:// URL")
    if not url.raw_host:
        raise OptionsError("url: has no host")
    try:  # what the resolver will do with it: labels of 1 to 63 characters
        url.raw_host.decode("ascii").encode("idna")
    except UnicodeError:
        raise OptionsError("url: the host is not a valid DNS name") from None
    return url


def _check_key(
    options: HttpOptions, name: str, decode: Callable[[str], object], *, uses: Signing
) -> str | None:
    """`secret` or `private_key`: required when `signing` is `uses` or "both", and refused (a
    mistake: nothing would be signed with it) otherwise."""
    value: str | None = getattr(options, name)
    signing = options.signing
    if signing not in (uses, "both"):
        if value is not None:
            hint = f'remove it, or set signing = "{uses}" or "both"'
            raise OptionsError(f'{name}: unused with signing = "{signing}" ({hint})')
        return None
    if value is None:
        raise OptionsError(f'{name}: required with signing = "{signing}"')
    try:
        decode(value)
    except ValueError as exc:
        raise OptionsError(f"{name}: {exc}") from None
    return value


def _check_ca_file(value: object, url: httpx.URL) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise OptionsError("ca_file: must be the path of a PEM file")
    if url.scheme != "https":
        raise OptionsError("ca_file: only used with an https:// url")
    try:
        tls_context(value)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM bundle"
        raise OptionsError(f"ca_file: cannot be loaded ({reason})") from None
    return value


def _redirect_host(base: httpx.URL, location: str | None) -> str:
    """Only the host of a redirect target: its path or query may carry tokens."""
    if not location:
        return "nowhere (no Location)"
    try:
        return base.join(location).host or "an unusable Location"
    except httpx.InvalidURL:
        return "an unusable Location"


def _preview(body: bytes) -> str:
    """The start of an answer's body (outbound read no more than PREVIEW_BYTES)."""
    return body[:PREVIEW_BYTES].decode("utf-8", errors="replace").strip()


def _error_text(exc: BaseException) -> str:
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_TEXT]
