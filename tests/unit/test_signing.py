"""Standard Webhooks signing, checked against the `standardwebhooks` reference library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.handlers.signing import decode_secret, sign
from tests.helpers import SECRET


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
