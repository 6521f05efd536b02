"""SQL of idempotency keys.

Every idempotent write runs two of these statements (the claim and the answer), so they go
to asyncpg directly: on the unit of work's bare connection (``Database.raw_transaction``), or
inside a session's transaction (``raw_connection``): a SQLAlchemy statement built per call
costs more CPU than the whole ledger entry's ``ledger_post()``.
"""

from __future__ import annotations

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

    async def get(self, principal: str, key: str) -> asyncpg.Record | None:
        """The stored row (``request_hash``, ``status_code``, ``response_body``), if any."""
        conn = await self._conn()
        row: asyncpg.Record | None = await conn.fetchrow(STORED, principal, key)
        return row

    async def store_response(self, principal: str, key: str, status_code: int,
                             body: bytes) -> None:
        conn = await self._conn()
        await conn.execute(ANSWER, principal, key, status_code, body)
