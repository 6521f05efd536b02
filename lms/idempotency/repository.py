"""SQL of idempotency keys.

Every idempotent write runs two of these statements (the claim and the answer), so they go
to asyncpg directly: on the unit of work's bare connection (``Database.raw_transaction``), or
inside a session's transaction (``raw_connection``): a SQLAlchemy statement built per call
costs more CPU than the whole ledger entry's ``ledger_post()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import RawConnection, raw_connection

CLAIM = """
    INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ($1, $2, $3)
    ON CONFLICT (principal, key) DO NOTHING
    RETURNING key"""

STORED = """
    SELECT request_hash, status_code, response_body FROM idempotency_keys
     WHERE principal = $1 AND key = $2"""

ANSWER = """
    UPDATE idempotency_keys SET status_code = $3, response_body = $4
     WHERE principal = $1 AND key = $2"""


@lru_cache(maxsize=64)
def claiming(facts_sql: str, params: int) -> str:
    """CLAIM and a unit of work's first query in one statement: ``facts_sql`` is a SELECT of
    at most one row with parameters $1 to ``params``; the key's principal, key and request
    hash follow. The row has ``claimed`` (false: the key was taken before) and the facts'
    columns, all NULL when the facts have no row. As CLAIM alone, the statement waits for a
    concurrent transaction that holds the same key to end."""
    return f"""
    WITH claim AS (
        INSERT INTO idempotency_keys (principal, key, request_hash)
        VALUES (${params + 1}, ${params + 2}, ${params + 3})
        ON CONFLICT (principal, key) DO NOTHING
        RETURNING key)
    SELECT EXISTS (SELECT FROM claim) AS claimed, facts.*
      FROM (SELECT) AS one LEFT JOIN ({facts_sql}) AS facts ON true"""


class IdempotencyRepository:
    def __init__(self, session: AsyncSession | RawConnection) -> None:
        self.session = session

    async def _conn(self) -> RawConnection:
        if isinstance(self.session, AsyncSession):
            conn: RawConnection = await raw_connection(self.session)
            return conn
        return self.session

    async def insert(self, principal: str, key: str, request_hash: str) -> bool:
        """Insert the key; False when it already exists.

        A concurrent transaction holding the same uncommitted key makes this statement wait
        on the primary key until that transaction ends, so duplicates are serialised here.
        """
        conn = await self._conn()
        return await conn.fetchval(CLAIM, principal, key, request_hash) is not None

    async def insert_with(self, principal: str, key: str, request_hash: str, facts_sql: str,
                          facts_args: Sequence[Any]) -> asyncpg.Record:
        """``insert`` and the facts in one statement (``claiming``)."""
        conn = await self._conn()
        row: asyncpg.Record | None = await conn.fetchrow(
            claiming(facts_sql, len(facts_args)), *facts_args, principal, key, request_hash)
        assert row is not None  # one row, whatever the facts found
        return row

    async def get(self, principal: str, key: str) -> asyncpg.Record | None:
        """The stored row (``request_hash``, ``status_code``, ``response_body``), if any."""
        conn = await self._conn()
        row: asyncpg.Record | None = await conn.fetchrow(STORED, principal, key)
        return row

    async def store_response(self, principal: str, key: str, status_code: int,
                             body: bytes) -> None:
        conn = await self._conn()
        await conn.execute(ANSWER, principal, key, status_code, body)
