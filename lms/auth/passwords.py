"""Password hashing with argon2id (libpass, imported as passlib)."""

from __future__ import annotations

from passlib.hash import argon2

# Moderate cost: 2 cores serve many sign-ins; argon2id with 64 MiB would starve the API.
_hasher = argon2.using(type="ID", memory_cost=19456, time_cost=2, parallelism=1)

# Verified against when the user does not exist, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    hashed: str = _hasher.hash(password)
    return hashed


def verify_password(password: str, hashed: str | None) -> bool:
    if hashed is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    ok: bool = _hasher.verify(password, hashed)
    return ok
