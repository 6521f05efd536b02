"""One-time member codes: generated from ``secrets``, kept only as an HMAC."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_DIGITS = 8


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(secret: str, card_number: str, code: str) -> str:
    """HMAC-SHA256 over card and code under the server's secret: a stolen table alone does
    not let anyone try the 10^8 codes of a card offline."""
    message = f"{card_number}:{code}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
