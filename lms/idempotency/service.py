"""Idempotency of mutating operations (DESIGN §3, STYLE 5), independent of HTTP.

Every step runs inside the caller's unit of work, so the key, the work and the stored answer
commit together or not at all:

1. ``claim`` inserts the key. If a concurrent request holds the same key, the insert waits
   until that request's transaction ends: after a commit this request sees the stored answer
   and replays it; after a rollback the insert succeeds and this request does the work.
2. The caller does the work, then ``complete`` stores the answer.

Only successful answers are stored. A business error rolls the whole transaction back, key
included, so the same key can be retried (with the same or a corrected body) later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import RawConnection
from lms.idempotency.errors import (
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    IdempotencyRequestUnfinished,
)
from lms.idempotency.repository import IdempotencyRepository

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status_code: int
    body: bytes


def validate_key(key: str) -> str:
    # Edge whitespace is refused rather than stripped: proxies may trim header values, so one
    # key could otherwise arrive in two forms and be stored twice.
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable() \
            or key != key.strip():
        raise IdempotencyKeyInvalid()
    return key


def request_hash(*parts: bytes) -> str:
    """SHA-256 over length-prefixed parts, so that no two different requests share a hash
    by moving bytes from one part to the next."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def sql_refusal(exc: asyncpg.PostgresError) -> Exception | None:
    """The problem for a refusal of idempotency_claim() (migration 0022), which a write done
    by one SQL function raises from its first step; None for any other error."""
    state = getattr(exc, "sqlstate", None)
    if state == "ID001":
        return IdempotencyKeyReused()
    if state == "ID002":
        return IdempotencyRequestUnfinished()
    return None


class IdempotencyService:
    def __init__(self, session: AsyncSession | RawConnection) -> None:
        self.repo = IdempotencyRepository(session)

    async def claim(self, principal: str, key: str, fingerprint: str) -> StoredAnswer | None:
        """Take the key for this request; the earlier answer when it was already taken."""
        if await self.repo.insert(principal, key, fingerprint):
            return None
        return await self._earlier(principal, key, fingerprint)

    async def _earlier(self, principal: str, key: str, fingerprint: str) -> StoredAnswer:
        row = await self.repo.get(principal, key)
        if row is None:  # pragma: no cover - the row can only go by a manual purge
            raise IdempotencyRequestUnfinished()
        if row["request_hash"] != fingerprint:
            raise IdempotencyKeyReused()
        if row["status_code"] is None or row["response_body"] is None:
            raise IdempotencyRequestUnfinished()
        return StoredAnswer(row["status_code"], bytes(row["response_body"]))

    async def complete(self, principal: str, key: str, answer: StoredAnswer) -> None:
        await self.repo.store_response(principal, key, answer.status_code, answer.body)
