"""The signature helper receivers use: good, tampered, stale, malformed, wrong secret."""

from __future__ import annotations

import pytest

from monitor.alerts.signature import SignatureError, sign, verify

SECRET = b"whsec-test"
BODY = b'{"id":"a1","rule":"burst"}'
T = 1_780_000_000


def test_a_signed_body_verifies() -> None:
    header = sign(SECRET, BODY, T)
    assert header.startswith(f"t={T},v1=") and len(header.split("v1=")[1]) == 64
    verify(SECRET, BODY, header, now=T + 10)


def test_a_tampered_body_is_rejected() -> None:
    header = sign(SECRET, BODY, T)
    with pytest.raises(SignatureError, match="tampered body or wrong secret"):
        verify(SECRET, BODY.replace(b"burst", b"calm!"), header, now=T)


def test_a_stale_timestamp_is_rejected() -> None:
    header = sign(SECRET, BODY, T)
    with pytest.raises(SignatureError, match="stale signature"):
        verify(SECRET, BODY, header, now=T + 301)
    verify(SECRET, BODY, header, now=T + 3600, tolerance_s=7200)


def test_a_replayed_timestamp_cannot_be_moved_forward() -> None:
    header = sign(SECRET, BODY, T)
    forged = header.replace(f"t={T}", f"t={T + 1000}")
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, BODY, forged, now=T + 1000)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"other", BODY, sign(SECRET, BODY, T), now=T)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=abc,v1=00", "t=1", "garbage", "t=,v1=x"])
def test_malformed_headers_are_rejected(header: str) -> None:
    with pytest.raises(SignatureError, match="malformed"):
        verify(SECRET, BODY, header, now=T)
