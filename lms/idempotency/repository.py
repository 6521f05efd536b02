"""SQL of idempotency keys."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms.idempotency.models import IdempotencyKey


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, principal: str, key: str, request_hash: str) -> bool:
        """Insert the key; False when it already exists.

        A concurrent transaction holding the same uncommitted key makes this statement wait
        on the primary key until that transaction ends, so duplicates are serialised here.
        """
        inserted = (await self.session.execute(
            insert(IdempotencyKey)
            .values(principal=principal, key=key, request_hash=request_hash)
            .on_conflict_do_nothing(index_elements=["principal", "key"])
            .returning(IdempotencyKey.key)
        )).first()
        return inserted is not None

    async def get(self, principal: str, key: str) -> IdempotencyKey | None:
        return (await self.session.execute(
            select(IdempotencyKey).where(IdempotencyKey.principal == principal,
                                         IdempotencyKey.key == key)
        )).scalar_one_or_none()

    async def store_response(self, principal: str, key: str, status_code: int,
                             body: bytes) -> None:
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.principal == principal, IdempotencyKey.key == key)
            .values(status_code=status_code, response_body=body))
