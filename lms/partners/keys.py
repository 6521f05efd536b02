"""API key material: ``lms_<prefix>_<secret>``, shown once, stored only as SHA-256.

The prefix (8 hex characters) is public and finds the key's row; the secret is 32 random
bytes, base64url. The stored hash covers the whole key and is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_MARK = "lms_"
PREFIX_BYTES = 4  # 8 hex characters
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class NewKey:
    prefix: str
    key: str  # the whole key, to be shown once and never stored
    key_hash: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> NewKey:
    prefix = secrets.token_hex(PREFIX_BYTES)
    key = f"{KEY_MARK}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(prefix, key, key_hash(key))


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_MARK)


def key_prefix(key: str) -> str | None:
    """The public prefix of a key-shaped token, or None when it is not shaped like one.
    (The secret is base64url and may itself contain ``_``; the prefix never does.)"""
    if not key.startswith(KEY_MARK):
        return None
    prefix, sep, secret = key[len(KEY_MARK):].partition("_")
    if not sep or len(prefix) != 2 * PREFIX_BYTES or not secret:
        return None
    return prefix


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(key_hash(key), stored_hash)
