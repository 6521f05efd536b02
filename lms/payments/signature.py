"""HMAC-SHA256 webhook signatures: ``LMS-Signature: t=<unix seconds>,v1=<hex>``.

The signed message is ``<t>.<raw body>``, so neither the body nor the time can be changed
without the secret; a signature older (or newer) than the tolerance is refused, so a captured
webhook cannot be replayed days later with a valid signature.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "LMS-Signature"


class SignatureError(Exception):
    """The header is missing or malformed, the signature is wrong, or it is stale."""

    def __init__(self, reason: str, *, stale: bool = False) -> None:
        super().__init__(reason)
        self.stale = stale


def compute(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute(secret, t, body)}"


def verify(secret: str, header: str | None, body: bytes, *, tolerance: int,
           now: float | None = None) -> int:
    """The signature's timestamp, or SignatureError."""
    if not header:
        raise SignatureError(f"The {HEADER} header is missing")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise SignatureError(f"The {HEADER} header has no timestamp") from None
    expected = compute(secret, timestamp, body)
    # Several v1 values are allowed, so that the secret can be rotated without a gap.
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise SignatureError("The signature does not match the body")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"The signature is older than {tolerance} seconds", stale=True)
    return timestamp
