"""`llmtune-receiver keys generate`: a new ed25519 pair, as TOML lines or JSON, that matches; a
`whsec_` secret (`--hmac`) that the Standard Webhooks library verifies with."""

from __future__ import annotations

import base64
import time
import tomllib

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook

from service.cli import main
from service.crypto.sealing import keyring_from, parse_key
from service.handlers.signing import decode_secret, sign, sign_ed25519
from tests.v1a_verifier import verify_v1a


def generated(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `keys generate ARGS` prints; it must exit 0 and print nothing on stderr."""
    assert main(["keys", "generate", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def assert_pair(private_key: str, public_key: str) -> None:
    """The private key is a 32-byte seed whose public key is `public_key`; a signature made with
    the private key verifies with the public key alone."""
    assert private_key.startswith("whsk_")
    seed = base64.b64decode(private_key.removeprefix("whsk_"), validate=True)
    assert len(seed) == 32
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert public_key == "whpk_" + base64.b64encode(public).decode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": sign_ed25519(private_key, "msg_1", 1700000000, b"{}"),
    }
    assert verify_v1a(public_key, headers, b"{}")


def test_text_is_toml_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    """Two TOML lines, `private_key` and `public_key`, and one comment saying where each goes."""
    out = generated(capsys)
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith('private_key = "whsk_')
    assert lines[1].startswith('public_key  = "whpk_')
    assert lines[2].startswith("#")
    assert "options" in lines[2]
    assert "destination" in lines[2]
    values = tomllib.loads(out)
    assert set(values) == {"private_key", "public_key"}
    assert_pair(values["private_key"], values["public_key"])


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints one object with `privateKey` and `publicKey`, a matching pair."""
    out = generated(capsys, "--json")
    assert out.count("\n") == 1
    values = orjson.loads(out)
    assert set(values) == {"privateKey", "publicKey"}
    assert_pair(values["privateKey"], values["publicKey"])


def test_each_run_makes_a_new_pair(capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs never print the same key."""
    first = orjson.loads(generated(capsys, "--json"))
    second = orjson.loads(generated(capsys, "--json"))
    assert first["privateKey"] != second["privateKey"]
    assert first["publicKey"] != second["publicKey"]


def test_keys_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    """`keys` alone is a usage error (exit 2) naming the actions."""
    with pytest.raises(SystemExit) as caught:
        main(["keys"])
    assert caught.value.code == 2
    assert "generate" in capsys.readouterr().err


def test_encryption_key_alone_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`--encryption` prints one ENCRYPTION_KEYS key, usable as `$(...)`: 32 random bytes."""
    first = generated(capsys, "--encryption")
    second = generated(capsys, "--encryption")
    assert first.count("\n") == 1
    key = first.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert keyring_from([key]).current == parse_key(key)  # ENCRYPTION_KEYS takes it as is
    assert second != first


def test_encryption_key_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    values = orjson.loads(generated(capsys, "--encryption", "--json"))
    assert set(values) == {"encryptionKey"}
    assert len(base64.b64decode(values["encryptionKey"], validate=True)) == 32


class TestHmacSecret:
    def test_toml_line_with_a_hint(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`--hmac` prints `secret = "whsec_…"` (32 random bytes) and where it goes."""
        out = generated(capsys, "--hmac")
        secret = tomllib.loads(out)["secret"]
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        assert decode_secret(secret) == base64.b64decode(secret.removeprefix("whsec_"))
        assert out.splitlines()[1].startswith("# put secret in the http route's options")

    def test_the_secret_signs_what_standard_webhooks_verifies(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A `v1` signature made with the printed secret verifies with the reference library (a
        real `serve` taking it as a route's secret: tests/e2e/test_cli_actions.py)."""
        secret = orjson.loads(generated(capsys, "--hmac", "--json"))["secret"]
        body = b'{"type":"training.completed"}'
        timestamp = int(time.time())
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, "msg_1", timestamp, body),
        }
        assert Webhook(secret).verify(body, headers) == {"type": "training.completed"}

    def test_each_run_makes_a_new_secret(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert generated(capsys, "--hmac") != generated(capsys, "--hmac")

    def test_not_with_encryption(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`--hmac` and `--encryption` ask for two different keys: a usage error (exit 2)."""
        with pytest.raises(SystemExit) as caught:
            main(["keys", "generate", "--hmac", "--encryption"])
        assert caught.value.code == 2
        assert "not allowed with" in capsys.readouterr().err
