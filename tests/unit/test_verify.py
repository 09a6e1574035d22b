"""Signature verification against JSON vectors and the key-reading rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.webhooks.verify import (
    VerificationError,
    parse_signature,
    sign,
    signing_keys,
    verify,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "signatures.json").read_text())


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_signature_vectors(vector: dict[str, Any]) -> None:
    """Each vector verifies, or fails with exactly the expected reason."""
    keys = signing_keys(vector["secrets"])
    headers = [(name, value) for name, value in vector["headers"]]
    body = vector["body"].encode("utf-8")
    if vector["expect"] == "ok":
        verified = verify(keys, headers, body)
        assert verified.reading == vector["reading"]
        assert verified.secret_index == vector.get("secret_index", 0)
    else:
        with pytest.raises(VerificationError) as caught:
            verify(keys, headers, body)
        assert caught.value.reason == vector["expect"]


class TestSigningKeys:
    def test_whsec_secret_gives_whole_then_stripped(self) -> None:
        """A whsec_ secret is tried whole first, then without its prefix."""
        keys = signing_keys(["whsec_abc"])
        assert [(k.reading, k.key) for k in keys] == [("whole", b"whsec_abc"), ("stripped", b"abc")]

    def test_plain_secret_has_one_reading(self) -> None:
        """A user-chosen secret without the prefix is only used whole."""
        assert [k.reading for k in signing_keys(["plain"])] == ["whole"]

    def test_secret_indexes_follow_configuration_order(self) -> None:
        """Rotation: each key knows which configured secret it came from."""
        assert [k.secret_index for k in signing_keys(["a", "whsec_b"])] == [0, 1, 1]


class TestParseSignature:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("ab" * 32, bytes([0xAB] * 32), id="lower"),
            pytest.param("AB" * 32, bytes([0xAB] * 32), id="upper"),
            pytest.param("sha256=" + "01" * 32, bytes([1] * 32), id="prefixed"),
            pytest.param("Sha256=" + "01" * 32, bytes([1] * 32), id="prefix-any-case"),
        ],
    )
    def test_accepted_forms(self, value: str, expected: bytes) -> None:
        """Hex in either case, with or without `sha256=`, decodes to the digest."""
        assert parse_signature(value) == expected

    @pytest.mark.parametrize(
        "value",
        ["", "sha256=", "ab" * 31, "ab" * 33, "g" * 64, "٣" * 64, "sha256=sha256=" + "ab" * 32],
    )
    def test_malformed(self, value: str) -> None:
        """Anything but 64 hex digits is malformed, never an exception of another kind."""
        with pytest.raises(VerificationError) as caught:
            parse_signature(value)
        assert caught.value.reason == "malformed_signature"


def test_sign_matches_verify() -> None:
    """`sign` (used by send-test-event) keys with the whole secret: `verify` says so."""
    body = b'{"event":"x"}'
    keys = signing_keys(["other", "whsec_s3cret"])
    verified = verify(keys, [("X-LLMTune-Signature", sign("whsec_s3cret", body))], body)
    assert (verified.header, verified.secret_index, verified.reading) == (
        "x-llmtune-signature",
        1,
        "whole",
    )


def test_missing_reports_missing_flag() -> None:
    """Missing and body-only signatures are 'missing'; wrong ones are not."""
    assert VerificationError("missing_signature").missing
    assert VerificationError("body_signature_unsupported").missing
    assert not VerificationError("signature_mismatch").missing
