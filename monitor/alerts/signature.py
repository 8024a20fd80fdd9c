"""Webhook signatures.

``X-Riskwire-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

A receiver verifies a delivery like this::

    from monitor.alerts.signature import verify, SignatureError

    try:
        verify(secret, request_body, request.headers["X-Riskwire-Signature"], now=time.time())
    except SignatureError as exc:
        return 400, str(exc)

and de-duplicates on the ``Idempotency-Key`` header (the alert id): a retried delivery carries the
same key and a new ``X-Riskwire-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac

from monitor.errors import RiskwireError

HEADER = "X-Riskwire-Signature"
DELIVERY_HEADER = "X-Riskwire-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class SignatureError(RiskwireError):
    """A webhook signature is malformed, does not match the body, or is too old."""


def _mac(secret: bytes, body: bytes, t: int) -> str:
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The header value for ``body`` sent at unix time ``t``."""
    return f"t={t},v1={_mac(secret, body, t)}"


def verify(
    secret: bytes, body: bytes, header: str, *, now: float, tolerance_s: float = 300
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` within ``tolerance_s``."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not value:
            raise SignatureError(f"malformed signature header: {header!r}")
        fields.setdefault(key, []).append(value)
    if "t" not in fields or "v1" not in fields:
        raise SignatureError(f"malformed signature header (needs t= and v1=): {header!r}")
    try:
        t = int(fields["t"][0])
    except ValueError as exc:
        raise SignatureError(f"malformed timestamp in signature header: {header!r}") from exc
    if abs(now - t) > tolerance_s:
        raise SignatureError(
            f"stale signature: timestamp {t} is {abs(now - t):.0f}s from now "
            f"(tolerance {tolerance_s:.0f}s)"
        )
    want = _mac(secret, body, t)
    if not any(hmac.compare_digest(want, got) for got in fields["v1"]):
        raise SignatureError("signature does not match the body (tampered body or wrong secret)")
