"""Helpers of the tier and expiry tests: members with qualifying units on their account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text

from lms.accounts.repository import MemberRepository
from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, PostedEntry, SystemAccount, Unit
from tests.factories import TEST_ACTOR, register_member


async def new_member(client: httpx.AsyncClient, db: Database) -> dict[str, Any]:
    """A registered, signed-in member with ``accountId`` added."""
    member = await register_member(client)
    found = await db.transaction(lambda s: MemberRepository(s).by_id(member["member"]["id"]))
    assert found is not None
    return member | {"id": found.id, "accountId": found.account_id}


async def earn(in_ledger: Any, account: int, *, status_miles: int = 0, segments: int = 0,
               miles: int = 0) -> list[PostedEntry]:
    """Credit qualifying units (and miles) as separate entries, as an accrual would."""

    async def work(ledger: Ledger) -> list[PostedEntry]:
        entries = []
        for unit, amount in ((Unit.STATUS_MILES, status_miles), (Unit.SEGMENTS, segments),
                             (Unit.MILES, miles)):
            if amount:
                entries.append(await ledger.credit(
                    account, amount, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR, unit=unit,
                    from_system=(SystemAccount.ISSUANCE if unit is Unit.MILES
                                 else SystemAccount.QUALIFICATION)))
        return entries

    result: list[PostedEntry] = await in_ledger(work)
    return result


async def standing(db: Database, member_id: int) -> tuple[str, datetime | None]:
    async def read(session: Any) -> tuple[str, datetime | None]:
        row = (await session.execute(text(
            "SELECT tier, tier_valid_until FROM members WHERE id = :id"),
            {"id": member_id})).one()
        return row.tier, row.tier_valid_until

    result: tuple[str, datetime | None] = await db.transaction(read)
    return result


async def set_standing(db: Database, member_id: int, tier: str,
                       valid_until: datetime | None) -> None:
    async def write(session: Any) -> None:
        await session.execute(text(
            "UPDATE members SET tier = :t, tier_valid_until = :v WHERE id = :id"),
            {"t": tier, "v": valid_until, "id": member_id})

    await db.transaction(write)


async def history(db: Database, member_id: int) -> list[tuple[str, str, str]]:
    async def read(session: Any) -> list[tuple[str, str, str]]:
        rows = (await session.execute(text(
            "SELECT from_tier, to_tier, reason FROM tier_history WHERE member_id = :id "
            "ORDER BY id"), {"id": member_id})).all()
        return [(r.from_tier, r.to_tier, r.reason) for r in rows]

    result: list[tuple[str, str, str]] = await db.transaction(read)
    return result


async def events(db: Database, topic: str, key: str, value: int) -> list[dict[str, Any]]:
    async def read(session: Any) -> list[dict[str, Any]]:
        rows = (await session.execute(text(
            "SELECT payload FROM outbox_events WHERE topic = :t "
            "AND (payload ->> :k)::bigint = :v ORDER BY id"),
            {"t": topic, "k": key, "v": value})).scalars()
        return list(rows)

    result: list[dict[str, Any]] = await db.transaction(read)
    return result
