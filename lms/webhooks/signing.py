"""The webhook signature scheme (docs/partner-api-webhooks.md).

``Webhook-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` where ``timestamp``
is the ``Webhook-Timestamp`` header (Unix seconds) and ``body`` the raw request body. Signing
the timestamp with the body lets a receiver refuse replays of an old request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_MARK = "whsec_"
SCHEME = "v1"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_MARK + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"{SCHEME}={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, timestamp: str, body: bytes, now: int,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: a fresh timestamp and one matching ``v1=`` signature (several
    may be sent, space-separated)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    expected = signature(secret, sent, body)
    return any(hmac.compare_digest(expected, part.removeprefix(f"{SCHEME}="))
               for part in header.split() if part.startswith(f"{SCHEME}="))
