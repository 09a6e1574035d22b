"""Standard Webhooks signing: `v1` checked against the `standardwebhooks` reference library,
`v1a` (ed25519) against RFC 8032's key vectors and an independent verifier written from the
specification (`tests/v1a_verifier.py`), which holds only the `whpk_` public key."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.handlers.signing import (
    decode_private_key,
    decode_secret,
    generate_key_pair,
    public_key_for,
    sign,
    sign_ed25519,
)
from tests.helpers import SECRET
from tests.v1a_verifier import v1a_entries, verify_v1a


def secret_for(key: bytes) -> str:
    """The `whsec_` form of a raw key."""
    return "whsec_" + base64.b64encode(key).decode("ascii")


def headers_for(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one message."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


SECRETS = [
    pytest.param(SECRET, id="project-test-secret"),
    pytest.param("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id="spec-library-secret"),
    pytest.param(secret_for(bytes(range(24))), id="24-bytes"),
    pytest.param(secret_for(bytes(range(200, 256)) + bytes(8)), id="64-bytes"),
]
BODIES = [
    pytest.param(orjson.dumps({"type": "training.completed", "jobId": "job-1"}), id="ascii"),
    pytest.param(
        orjson.dumps({"model": "Modèle-ß", "note": "日本語 ✓ 🚀", "quote": 'a"b\\c'}),
        id="non-ascii",
    ),
    pytest.param(b"{}", id="empty-object"),
]


class TestSign:
    def test_reference_vector(self) -> None:
        """The `sign` test vector of the standard-webhooks Python library gives the same value."""
        # libraries/python/tests/test_webhooks.py::test_sign_function in standard-webhooks.
        signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    @pytest.mark.parametrize("secret", SECRETS)
    @pytest.mark.parametrize("body", BODIES)
    def test_reference_verifier_accepts(self, secret: str, body: bytes) -> None:
        """The reference library verifies our headers over the exact body bytes."""
        headers = headers_for(secret, "dlv_0192a3b4c5d6", int(time.time()), body)
        assert Webhook(secret).verify(body, headers) == orjson.loads(body)

    @pytest.mark.parametrize("body", BODIES)
    def test_wrong_secret_is_rejected(self, body: bytes) -> None:
        """A verifier holding another secret refuses the signature."""
        headers = headers_for(SECRET, "dlv_0192a3b4c5d6", int(time.time()), body)
        other = secret_for(b"another-secret-of-24-bytes!")
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(body, headers)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            pytest.param("webhook-id", "dlv_other", id="id"),
            pytest.param("webhook-timestamp", None, id="timestamp"),
        ],
    )
    def test_id_and_timestamp_are_signed(self, field: str, value: str | None) -> None:
        """Changing the id or the timestamp after signing breaks verification."""
        now = int(time.time())
        body = b'{"a":1}'
        headers = headers_for(SECRET, "dlv_0192a3b4c5d6", now, body)
        headers[field] = value if value is not None else str(now - 1)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body, headers)

    @given(
        key=st.binary(min_size=24, max_size=64),
        msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True),
        timestamp=st.integers(min_value=0, max_value=4_000_000_000),
        text=st.text(),
    )
    def test_matches_reference_signer(
        self, key: bytes, msg_id: str, timestamp: int, text: str
    ) -> None:
        """For any key, id, time and UTF-8 body, our value equals the reference library's."""
        secret = secret_for(key)
        when = datetime.fromtimestamp(timestamp, UTC)
        expected = Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=text)
        assert sign(secret, msg_id, timestamp, text.encode()) == expected

    @pytest.mark.parametrize("msg_id", ["", "dlv.1"], ids=["empty", "dot"])
    def test_ambiguous_message_ids_are_refused(self, msg_id: str) -> None:
        """An empty id or one with a dot would make the signed content ambiguous."""
        with pytest.raises(ValueError, match="message id"):
            sign(SECRET, msg_id, 1, b"{}")


class TestDecodeSecret:
    def test_key_is_the_decoded_part_after_the_prefix(self) -> None:
        """The HMAC key is the base64-decoded text after `whsec_`, not the text itself."""
        assert decode_secret(SECRET) == b"test-secret-for-llmtune-receiver"

    def test_unpadded_base64_is_accepted(self) -> None:
        """Missing `=` padding, as some providers print secrets, decodes to the same key."""
        key = bytes(range(25))
        assert decode_secret(secret_for(key).rstrip("=")) == key

    @pytest.mark.parametrize(
        ("secret", "problem"),
        [
            pytest.param("dGVzdC1zZWNyZXQtZm9yLWxsbXR1bmUtcmVjZWl2ZXI=", "start", id="no-prefix"),
            pytest.param(
                "WHSEC_dGVzdC1zZWNyZXQtZm9yLWxsbXR1bmUtcmVjZWl2ZXI=", "start", id="upper-prefix"
            ),
            pytest.param("whsec_", "24 to 64", id="empty-key"),
            pytest.param("whsec_not*base64*at*all*sorry*!!", "base64", id="bad-characters"),
            pytest.param("whsec_abcde", "base64", id="impossible-length"),
            pytest.param("whsec_dGVzdC1zZWNyZXQ=", "24 to 64", id="too-short"),
            pytest.param(secret_for(bytes(23)), "24 to 64", id="23-bytes"),
            pytest.param(secret_for(bytes(65)), "24 to 64", id="65-bytes"),
            pytest.param(
                "whsec_dGVzdC1zZWNyZXQtZm9yLWxsbXR1bmUtcmVjZWl2ZXI=é", "base64", id="utf8"
            ),
            pytest.param(
                "whsec_dGVzdC1zZWNyZXQtZm9y LWxsbXR1bmUtcmVjZWl2ZXI=", "base64", id="space"
            ),
        ],
    )
    def test_malformed_secrets_raise(self, secret: str, problem: str) -> None:
        """Secrets without the prefix, with bad base64 or a key outside 24-64 bytes are refused."""
        with pytest.raises(ValueError, match=problem) as caught:
            decode_secret(secret)
        fragment = secret.removeprefix("whsec_")[:8]
        assert not fragment or fragment not in str(caught.value)

    def test_sign_refuses_a_malformed_secret(self) -> None:
        """Signing with a bad secret raises rather than signing with the wrong key."""
        with pytest.raises(ValueError, match="start"):
            sign("test-secret-for-llmtune-receiver", "dlv_1", 1, b"{}")


# RFC 8032, section 7.1, tests 1 and 2: (seed, public key).
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
OTHER_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
OTHER_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
MSG_ID = "dlv_0192a3b4c5d6"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def private_key_for(raw: bytes) -> str:
    """The `whsk_` form of raw key bytes (a seed, or seed and public key)."""
    return "whsk_" + b64(raw)


RFC_PRIVATE = private_key_for(RFC_SEED)
RFC_PUBLIC_TEXT = "whpk_" + b64(RFC_PUBLIC)
# A seed whose standard base64 has `+` and `/`, the characters base64url replaces.
PLUS_SLASH_SEED = bytes([0xFB, 0xFF]) * 16


def v1a_headers(private_key: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one message, signed `v1a`."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_ed25519(private_key, msg_id, timestamp, body),
    }


class TestDecodePrivateKey:
    @pytest.mark.parametrize(
        "private_key",
        [
            pytest.param(RFC_PRIVATE, id="seed-padded"),
            pytest.param(RFC_PRIVATE.rstrip("="), id="seed-unpadded"),
            pytest.param(private_key_for(RFC_SEED + RFC_PUBLIC), id="libsodium-64-padded"),
            pytest.param(
                private_key_for(RFC_SEED + RFC_PUBLIC).rstrip("="), id="libsodium-64-unpadded"
            ),
        ],
    )
    def test_accepted_forms_give_the_rfc_public_key(self, private_key: str) -> None:
        """The 32-byte seed and libsodium's 64 bytes, padded or not, are the same RFC 8032 key."""
        assert decode_private_key(private_key).public_key().public_bytes_raw() == RFC_PUBLIC
        assert public_key_for(private_key) == RFC_PUBLIC_TEXT

    def test_second_rfc_vector(self) -> None:
        """RFC 8032's second test key gives its public key too."""
        assert public_key_for(private_key_for(OTHER_SEED)) == "whpk_" + b64(OTHER_PUBLIC)

    @pytest.mark.parametrize(
        ("private_key", "problem"),
        [
            pytest.param(b64(RFC_SEED), "must start with 'whsk_'", id="no-prefix"),
            pytest.param("WHSK_" + b64(RFC_SEED), "must start with 'whsk_'", id="upper-prefix"),
            pytest.param("whsec_" + b64(RFC_SEED), "must start with 'whsk_'", id="whsec-prefix"),
            pytest.param(RFC_PUBLIC_TEXT, "'whpk_' is public", id="public-key-given"),
            pytest.param("whsk_", "not 0", id="empty"),
            pytest.param("whsk_not*base64*at*all*sorry*!!", "standard base64", id="bad-characters"),
            pytest.param("whsk_abcde", "standard base64", id="impossible-length"),
            pytest.param(RFC_PRIVATE + "é", "standard base64", id="utf8"),
            pytest.param(RFC_PRIVATE[:20] + " " + RFC_PRIVATE[20:], "standard base64", id="space"),
            pytest.param(
                private_key_for(PLUS_SLASH_SEED).replace("+", "-").replace("/", "_"),
                "standard base64",
                id="base64url-alphabet",
            ),
            pytest.param(private_key_for(RFC_SEED[:31]), "not 31", id="31-bytes"),
            pytest.param(private_key_for(RFC_SEED + b"\0"), "not 33", id="33-bytes"),
            pytest.param(private_key_for((RFC_SEED + RFC_PUBLIC)[:63]), "not 63", id="63-bytes"),
            pytest.param(private_key_for(RFC_SEED + RFC_PUBLIC + b"\0"), "not 65", id="65-bytes"),
            pytest.param(
                private_key_for(RFC_SEED + OTHER_PUBLIC),
                "not the public key of the first 32",
                id="mismatched-public-half",
            ),
            pytest.param(
                private_key_for(RFC_SEED + bytes(32)),
                "not the public key of the first 32",
                id="zero-public-half",
            ),
        ],
    )
    def test_malformed_keys_raise_without_the_key(self, private_key: str, problem: str) -> None:
        """A bad prefix, bad base64, a wrong length or a public half that is not the seed's is a
        ValueError saying so, and the message holds no part of the key."""
        with pytest.raises(ValueError, match=problem) as caught:
            decode_private_key(private_key)
        message = str(caught.value)
        encoded = private_key.split("_", 1)[-1]
        for fragment in (private_key, encoded[:8], encoded[-8:], RFC_SEED.hex()[:8]):
            assert not fragment or fragment not in message, fragment
        with pytest.raises(ValueError, match=problem) as signing:
            sign_ed25519(private_key, MSG_ID, 1, b"{}")
        assert str(signing.value) == message


class TestSignEd25519:
    @pytest.mark.parametrize("body", BODIES)
    def test_independent_verifier_accepts(self, body: bytes) -> None:
        """A verifier holding only the `whpk_` text verifies the signature over the body."""
        private_key, public_key = generate_key_pair()
        now = int(time.time())
        headers = v1a_headers(private_key, MSG_ID, now, body)
        assert verify_v1a(public_key, headers, body, now=now)

    def test_value_is_one_v1a_entry_of_64_bytes(self) -> None:
        """The value is `v1a,` and the base64 of a 64-byte ed25519 signature, nothing else."""
        value = sign_ed25519(RFC_PRIVATE, MSG_ID, 1614265330, b"{}")
        assert value.startswith("v1a,")
        assert " " not in value
        [entry] = v1a_entries(value)
        assert len(base64.b64decode(entry, validate=True)) == 64

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            pytest.param("webhook-id", "dlv_other", id="id"),
            pytest.param("webhook-timestamp", "1614265331", id="timestamp"),
        ],
    )
    def test_id_and_timestamp_are_signed(self, field: str, value: str) -> None:
        """Changing the id or the timestamp after signing breaks verification."""
        headers = v1a_headers(RFC_PRIVATE, MSG_ID, 1614265330, b'{"a":1}')
        assert verify_v1a(RFC_PUBLIC_TEXT, headers, b'{"a":1}')
        headers[field] = value
        assert not verify_v1a(RFC_PUBLIC_TEXT, headers, b'{"a":1}')

    def test_tampered_body_fails(self) -> None:
        """One changed byte of the body breaks verification."""
        headers = v1a_headers(RFC_PRIVATE, MSG_ID, 1614265330, b'{"a":1}')
        assert not verify_v1a(RFC_PUBLIC_TEXT, headers, b'{"a":2}')

    def test_another_keys_public_key_fails(self) -> None:
        """The public key of another pair does not verify the signature."""
        headers = v1a_headers(RFC_PRIVATE, MSG_ID, 1614265330, b"{}")
        assert not verify_v1a("whpk_" + b64(OTHER_PUBLIC), headers, b"{}")
        assert not verify_v1a(generate_key_pair()[1], headers, b"{}")

    def test_seed_and_libsodium_forms_sign_alike(self) -> None:
        """ed25519 is deterministic: both forms of one key give the same value."""
        long_form = private_key_for(RFC_SEED + RFC_PUBLIC).rstrip("=")
        assert sign_ed25519(long_form, MSG_ID, 7, b"{}") == sign_ed25519(
            RFC_PRIVATE, MSG_ID, 7, b"{}"
        )

    @pytest.mark.parametrize("msg_id", ["", "dlv.1"], ids=["empty", "dot"])
    def test_ambiguous_message_ids_are_refused(self, msg_id: str) -> None:
        """As for `v1`: an empty id or one with a dot would make the signed content ambiguous."""
        with pytest.raises(ValueError, match="message id"):
            sign_ed25519(RFC_PRIVATE, msg_id, 1, b"{}")

    @given(
        msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True),
        timestamp=st.integers(min_value=0, max_value=4_000_000_000),
        body=st.binary(max_size=512),
    )
    def test_any_message_verifies(self, msg_id: str, timestamp: int, body: bytes) -> None:
        """For any id, time and body, the independent verifier accepts the RFC key's signature."""
        headers = v1a_headers(RFC_PRIVATE, msg_id, timestamp, body)
        assert verify_v1a(RFC_PUBLIC_TEXT, headers, body)


class TestGenerateKeyPair:
    def test_pair_matches_and_private_key_is_the_seed(self) -> None:
        """`whsk_` of 32 bytes (the seed) and the `whpk_` of its 32-byte public key."""
        private_key, public_key = generate_key_pair()
        assert private_key.startswith("whsk_")
        assert public_key.startswith("whpk_")
        assert len(base64.b64decode(private_key.removeprefix("whsk_"), validate=True)) == 32
        assert len(base64.b64decode(public_key.removeprefix("whpk_"), validate=True)) == 32
        assert public_key_for(private_key) == public_key

    def test_generate_sign_verify(self) -> None:
        """A fresh pair signs with the private key and verifies with the public one only."""
        private_key, public_key = generate_key_pair()
        headers = v1a_headers(private_key, MSG_ID, 1614265330, b'{"ok":true}')
        assert verify_v1a(public_key, headers, b'{"ok":true}')

    def test_pairs_differ(self) -> None:
        """Each call makes a new key."""
        assert generate_key_pair() != generate_key_pair()
