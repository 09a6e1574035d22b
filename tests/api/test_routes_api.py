"""`GET /admin/routes` and the console's routes page: the configured routes with an `http`
route's signing, `v1a` public key and destination host, and never a secret, a private key or a
URL's path, query or user info."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.http.admin import shapes
from service.routing import Subscription
from tests.api.test_console import CONSOLE, login
from tests.helpers import ADMIN_TOKEN, AUTH, SECRET, make_settings, running_app

READ_TOKEN = "routes-read-token"
SEEDS = (bytes(range(32)), bytes(range(32, 64)))
PRIVATE_KEYS = tuple("whsk_" + base64.b64encode(seed).decode() for seed in SEEDS)
# Derived here with `cryptography` alone, not by the code under test.
PUBLIC_KEYS = tuple(
    "whpk_"
    + base64.b64encode(
        Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    ).decode()
    for seed in SEEDS
)
URL_SECRETS = ("T0KEN-IN-PATH", "QUERY-TOKEN", "user-info-pw")
ROUTES = (
    Subscription(
        "forward-v1a",
        "http",
        ("*",),
        options={
            "url": "https://ops.example.com/hooks/T0KEN-IN-PATH?token=QUERY-TOKEN",
            "signing": "v1a",
            "private_key": PRIVATE_KEYS[0],
        },
    ),
    Subscription(
        "forward-both",
        "http",
        ("training.*", "model.deployed"),
        options={
            "url": "https://bot:user-info-pw@both.example.com/in",
            "signing": "both",
            "secret": SECRET,
            "private_key": PRIVATE_KEYS[1].rstrip("="),
        },
        max_attempts=3,
        rate_limit=2.5,
        workspaces=("default", "staging"),
    ),
    Subscription(
        "forward-v1", "http", ("*",), options={"url": "https://v1.example.com/", "secret": SECRET}
    ),
    Subscription("audit", "log", ("*",)),
    # Disabled: never checked at start-up, so its options may be anything.
    Subscription(
        "off",
        "http",
        ("*",),
        options={"url": "::not a url::", "signing": "v1a", "private_key": "whsk_broken"},
        enabled=False,
    ),
)


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the routes above, a write token and a read token."""
    settings = make_settings(sqlite_url, admin_tokens=[ADMIN_TOKEN, f"ro:read:{READ_TOKEN}"])
    async with running_app(settings, routes=ROUTES) as client:
        yield client


def assert_no_secret(text: str) -> None:
    """No secret, private key (nor a piece of one) or credential of a URL is in `text`."""
    pieces = [SECRET, SECRET.removeprefix("whsec_")[:12], *URL_SECRETS]
    for key in PRIVATE_KEYS:
        encoded = key.removeprefix("whsk_")
        pieces += [key, encoded[:12], encoded[-14:-2]]
    for piece in pieces:
        assert piece not in text, piece


async def test_lists_routes_with_signing_and_public_key(client: httpx.AsyncClient) -> None:
    """Every route in file order; `http` routes show signing, public key and host only."""
    answer = await client.get("/admin/routes", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [item["name"] for item in items] == [route.name for route in ROUTES]
    for item in items:
        assert set(item) == set(shapes.RouteView.__required_keys__)
    v1a, both, v1, audit, off = items
    assert (v1a["signing"], v1a["publicKey"], v1a["destinationHost"]) == (
        "v1a",
        PUBLIC_KEYS[0],
        "ops.example.com",
    )
    assert (both["signing"], both["publicKey"], both["destinationHost"]) == (
        "both",
        PUBLIC_KEYS[1],
        "both.example.com",
    )
    assert both["events"] == ["training.*", "model.deployed"]
    assert (both["maxAttempts"], both["rateLimit"]) == (3, 2.5)
    assert both["workspaces"] == ["default", "staging"]
    assert (v1["signing"], v1["publicKey"], v1["workspaces"]) == ("v1", None, None)
    assert (audit["handler"], audit["signing"], audit["publicKey"]) == ("log", None, None)
    assert audit["destinationHost"] is None
    assert off["enabled"] is False
    assert (off["signing"], off["publicKey"]) == ("v1a", None)


async def test_never_shows_secrets(client: httpx.AsyncClient) -> None:
    """Neither the secret, the private keys nor a URL's token-bearing parts are in the answer."""
    answer = await client.get("/admin/routes", headers=AUTH)
    assert answer.status_code == 200
    assert_no_secret(answer.text)
    assert "options" not in answer.text


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        pytest.param({}, "", 401, id="no-token"),
        pytest.param({"Authorization": "Bearer nope"}, "", 401, id="unknown-token"),
        pytest.param(AUTH, "?name=audit", 400, id="undeclared-parameter"),
    ],
)
async def test_refusals(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, status: int
) -> None:
    """Like every admin route: a token is needed, and no query parameter is taken."""
    answer = await client.get("/admin/routes" + query, headers=headers)
    assert answer.status_code == status
    assert set(answer.json()["error"]) == {"message", "code", "details"}
    assert_no_secret(answer.text)


async def test_console_page_shows_public_keys(client: httpx.AsyncClient) -> None:
    """The console's routes page lists the routes with their public keys, and no secret."""
    await login(client, READ_TOKEN)
    page = await client.get(f"{CONSOLE}/routes")
    assert page.status_code == 200
    assert all(route.name in page.text for route in ROUTES)
    assert PUBLIC_KEYS[0] in page.text
    assert PUBLIC_KEYS[1] in page.text
    assert f'href="{CONSOLE}/routes"' in page.text
    assert_no_secret(page.text)
