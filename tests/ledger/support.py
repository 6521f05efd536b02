"""Helpers shared by the ledger tests: a ledger over a database of its own, and raw reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database, RawConnection, raw_connection
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.verify import Violation, verify

T = TypeVar("T")
SHARDS = 2


class _RolledBack(Exception):
    pass


async def plan_among_many_accounts(
        db: Database,
        explain: Callable[[RawConnection, list[int]], Awaitable[list[asyncpg.Record]]]
) -> str:
    """The plan ``explain`` gets (EXPLAIN's rows, joined) among 50,000 more member accounts
    with their balance rows, added in a savepoint and rolled back; it is given the newest
    thousand of them."""
    plan: list[str] = []

    async def work(conn: RawConnection) -> None:
        try:
            async with conn.transaction():  # a savepoint, rolled back below
                ids = [r["id"] for r in await conn.fetch("""
                    WITH a AS (INSERT INTO accounts (kind, allow_negative)
                               SELECT 'member', false FROM generate_series(1, 50000)
                               RETURNING id),
                    b AS (INSERT INTO balances (account_id, unit, allow_negative)
                          SELECT a.id, u, false FROM a,
                                 unnest(ARRAY['MILES', 'STATUS_MILES', 'SEGMENTS']) AS u)
                    SELECT id FROM a ORDER BY id DESC LIMIT 1000""")]
                plan.extend(r[0] for r in await explain(conn, ids))
                raise _RolledBack
        except _RolledBack:
            pass

    await db.raw_transaction(work)
    return "\n".join(plan)


class LedgerHarness:
    """A ``Database`` plus loaded system accounts; ``run`` is one committed unit of work."""

    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 5) -> None:
        self.db = Database(url, pool_size=pool_size, max_overflow=max_overflow,
                           retry_attempts=8)
        self.system = SystemAccounts(SHARDS)

    async def start(self) -> LedgerHarness:
        async def ensure(session: AsyncSession) -> None:
            await self.system.ensure(LedgerRepository(await raw_connection(session)))

        await self.db.transaction(ensure)
        return self

    async def run(self, fn: Callable[[Ledger], Awaitable[T]]) -> T:
        return await self.db.transaction(lambda session: fn(Ledger(session, self.system)))

    async def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of one read through asyncpg, in its own transaction."""

        async def read(session: AsyncSession) -> list[dict[str, Any]]:
            conn = await raw_connection(session)
            return [dict(r) for r in await conn.fetch(query, *args)]

        return await self.db.transaction(read)

    async def violations(self) -> list[Violation]:
        async with self.db.engine.connect() as conn:
            return await verify(conn)

    async def close(self) -> None:
        await self.db.dispose()
