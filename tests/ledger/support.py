"""Helpers shared by the ledger tests: a ledger over a database of its own, and raw reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database, raw_connection
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.verify import Violation, verify

T = TypeVar("T")
SHARDS = 2


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
