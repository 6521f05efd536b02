"""Lot expiry under the programme's policy: breakage in batches through the ledger, notices
ahead of time, the activity policy's extension, and the balance's 90-day figure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts, add_months
from lms.ledger.types import EntryKind, Unit
from lms.tiers.jobs import expiry_nightly
from tests.factories import TEST_ACTOR, bearer
from tests.tiers.support import events, new_member

DAY = timedelta(days=1)


async def miles(db: Database, system: SystemAccounts, account: int) -> int:
    balances = await db.transaction(lambda s: Ledger(s, system).balances(account))
    return next(b.posted for b in balances if b.unit is Unit.MILES)


async def lot_dates(db: Database, account: int) -> list[datetime]:
    async def read(session: Any) -> list[datetime]:
        return list((await session.execute(text(
            "SELECT expires_at FROM lots WHERE account_id = :a AND remaining > 0 "
            "ORDER BY id"), {"a": account})).scalars())

    result: list[datetime] = await db.transaction(read)
    return result


def credit(account: int, amount: int, expires: datetime,
           kind: EntryKind = EntryKind.ACCRUAL) -> Any:
    async def run(ledger: Ledger) -> Any:
        return await ledger.credit(account, amount, kind=kind, actor=TEST_ACTOR,
                                   lot_expires_at=expires)
    return run


@pytest.fixture
async def activity_policy(db: Database) -> AsyncIterator[None]:
    """The activity policy from now on, for one test (the row is removed afterwards)."""
    at = datetime.now(UTC) - timedelta(seconds=1)

    async def set_policy(session: Any) -> None:
        await session.execute(text(
            "INSERT INTO policy_settings (name, value, effective_from) "
            "VALUES ('expiry_policy', 'activity', :at)"), {"at": at})

    async def unset(session: Any) -> None:
        await session.execute(text(
            "DELETE FROM policy_settings WHERE name = 'expiry_policy' AND effective_from = :at"),
            {"at": at})

    await db.transaction(set_policy)
    yield
    await db.transaction(unset)


async def test_fixed_policy_expires_due_lots_in_batches_once(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        in_ledger: Any) -> None:
    now = datetime.now(UTC)
    members = [await new_member(client, db) for _ in range(5)]
    for m in members:
        await in_ledger(credit(m["accountId"], 700, now - DAY))
        await in_ledger(credit(m["accountId"], 300, now + 400 * DAY))
    # Held miles are promised to a partner: the expiry spares them.
    held = members[0]["accountId"]
    await in_ledger(lambda ledger: ledger.create_hold(held, 900, actor=TEST_ACTOR,
                                                      expires_at=now + DAY))
    run = await expiry_nightly(db, system, batch=2, concurrency=3)
    assert run.expired >= 5
    assert [await miles(db, system, m["accountId"]) for m in members] == [
        900, 300, 300, 300, 300]
    again = await expiry_nightly(db, system, batch=2, concurrency=3)
    assert [await miles(db, system, m["accountId"]) for m in members] == [
        900, 300, 300, 300, 300]
    assert again.notices == 0


async def test_expiring_notice_once_per_lot_ahead_of_time(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        in_ledger: Any) -> None:
    m = await new_member(client, db)
    now = datetime.now(UTC)
    soon = await in_ledger(credit(m["accountId"], 250, now + 20 * DAY))
    await in_ledger(credit(m["accountId"], 400, now + 60 * DAY))
    await expiry_nightly(db, system)
    await expiry_nightly(db, system)
    notices = await events(db, "miles.expiring", "accountId", m["accountId"])
    assert [(n["miles"], n["memberId"]) for n in notices] == [(250, m["id"])]
    assert soon.id  # the entry of the announced lot exists
    body = (await client.get("/v1/me/balance", headers=bearer(m["accessToken"]))).json()
    assert body["expiringIn90Days"] == 650


@pytest.mark.usefixtures("activity_policy")
async def test_activity_policy_keeps_lots_of_active_members_alive(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        in_ledger: Any) -> None:
    active, idle = await new_member(client, db), await new_member(client, db)
    now = datetime.now(UTC)
    await in_ledger(credit(active["accountId"], 500, now - DAY))
    await in_ledger(credit(active["accountId"], 100, now + 30 * DAY))
    # An adjustment is not earning: the idle member's lot expires as dated.
    await in_ledger(credit(idle["accountId"], 500, now - DAY, kind=EntryKind.ADJUSTMENT))
    run = await expiry_nightly(db, system)
    assert run.extended >= 2
    assert await miles(db, system, active["accountId"]) == 600
    assert await miles(db, system, idle["accountId"]) == 0
    dates = await lot_dates(db, active["accountId"])
    assert len(set(dates)) == 1 and dates[0] > add_months(now, 35)
    body = (await client.get("/v1/me/balance",
                             headers=bearer(active["accessToken"]))).json()
    assert body["expiringIn90Days"] == 0
    again = await expiry_nightly(db, system)
    assert again.extended == 0 and await lot_dates(db, active["accountId"]) == dates
