"""Password hashing with argon2id (libpass, imported as passlib) and the strength rule."""

from __future__ import annotations

import asyncio

from passlib.hash import argon2

# Moderate cost: 2 cores serve many sign-ins; argon2id with 64 MiB would starve the API.
_hasher = argon2.using(type="ID", memory_cost=19456, time_cost=2, parallelism=1)

# Verified against when the user does not exist, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

MIN_LENGTH = 10
MIN_DISTINCT = 5
# The most used passwords that pass the length rule; a full breached-password list is a
# later improvement (NIST SP 800-63B asks for one instead of composition rules).
COMMON = frozenset({
    "1234567890", "0123456789", "12345678910", "qwertyuiop", "1q2w3e4r5t", "password123",
    "password12", "password1!", "passw0rd123", "iloveyou123", "qwerty1234", "qwerty12345",
    "abcdefghij", "letmein123", "welcome123", "football123", "1qaz2wsx3edc", "trustno1234",
    "frequentflyer", "frequentflyer1", "airline123", "loyalty123",
})


def hash_password(password: str) -> str:
    hashed: str = _hasher.hash(password)
    return hashed


def verify_password(password: str, hashed: str | None) -> bool:
    if hashed is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    ok: bool = _hasher.verify(password, hashed)
    return ok


async def hash_password_async(password: str) -> str:
    """``hash_password`` off the event loop: argon2 takes tens of milliseconds of CPU, and
    argon2-cffi releases the GIL, so other requests keep being served meanwhile."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password: str, hashed: str | None) -> bool:
    return await asyncio.to_thread(verify_password, password, hashed)


def password_weakness(password: str, email: str) -> str | None:
    """Why the password is too weak for an account with this e-mail, or None."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters"
    if len(set(password)) < MIN_DISTINCT:
        return f"Use at least {MIN_DISTINCT} different characters"
    lowered = password.lower()
    if lowered in COMMON:
        return "This password is too common"
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in lowered:
        return "The password must not contain your e-mail address"
    return None
