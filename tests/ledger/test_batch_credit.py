"""A batch of credits (Ledger.post_credits): the balance rows take the batch's totals in one
UPDATE in ledger order (CREDIT_BATCH_BALANCES), with no lock before it; a closed or unknown
balance row refuses the batch, and its transaction writes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from lms.db import Database, RawConnection
from lms.ledger.errors import AccountClosed, AccountNotFound
from lms.ledger.repository import (
    BATCH_PLAN_SETTINGS,
    CREDIT_BATCH_BALANCES,
    LedgerRepository,
    key_columns,
)
from lms.ledger.service import Ledger, SystemAccounts, credit_totals
from lms.ledger.types import AccountKind, SystemAccount, Unit
from tests.factories import TEST_ACTOR
from tests.ledger.support import plan_among_many_accounts


def credit_rows(ref: str, account: int, n: int, miles: int = 100) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [(f"{ref}-{i}", account, miles, miles // 2, 1, now, f"coupon {i}", "{}",
             now + timedelta(days=365), None) for i in range(n)]


async def balance_rows(db: Database, account: int) -> dict[str, int]:
    async def read(conn: RawConnection) -> dict[str, int]:
        return {r["unit"]: r["posted"] for r in await conn.fetch(
            "SELECT unit, posted FROM balances WHERE account_id = $1", account)}
    return await db.raw_transaction(read)


async def test_two_batches_in_one_transaction_run_each_leg_on_from_the_last(
        db: Database, system: SystemAccounts) -> None:
    """No balance is remembered between batches: the second UPDATE answers what the first
    wrote, and the legs' balance_after carry on from it."""
    issuance = system.pick(SystemAccount.ISSUANCE)
    qualification = system.pick(SystemAccount.QUALIFICATION)
    ref = uuid.uuid4().hex

    async def work(conn: RawConnection) -> tuple[int, list[int]]:
        ledger = Ledger(conn, system)
        account = await ledger.open_account(AccountKind.MEMBER)
        first = await ledger.post_credits(credit_rows(f"{ref}-a", account, 2),
                                          issuance=issuance, qualification=qualification,
                                          actor=TEST_ACTOR, source="test-batch")
        second = await ledger.post_credits(credit_rows(f"{ref}-b", account, 1, 50),
                                           issuance=issuance, qualification=qualification,
                                           actor=TEST_ACTOR, source="test-batch")
        return account, first + second

    account, entries = await db.raw_transaction(work)

    async def legs(conn: RawConnection) -> list[tuple[str, int, int]]:
        return [(r["unit"], r["amount"], r["balance_after"]) for r in await conn.fetch(
            "SELECT unit, amount, balance_after FROM postings WHERE account_id = $1 "
            "ORDER BY entry_id, id", account)]

    assert [u for u, _, _ in await db.raw_transaction(legs)].count("MILES") == 3
    miles = [after for u, _, after in await db.raw_transaction(legs) if u == "MILES"]
    assert miles == [100, 200, 250]
    assert await balance_rows(db, account) == {"MILES": 250, "STATUS_MILES": 125,
                                               "SEGMENTS": 3}
    assert len(entries) == 3


async def test_a_closed_account_refuses_the_batch_and_nothing_is_written(
        db: Database, system: SystemAccounts) -> None:
    issuance = system.pick(SystemAccount.ISSUANCE)
    qualification = system.pick(SystemAccount.QUALIFICATION)

    async def accounts(conn: RawConnection) -> tuple[int, int]:
        ledger = Ledger(conn, system)
        open_one = await ledger.open_account(AccountKind.MEMBER)
        closed = await ledger.open_account(AccountKind.MEMBER)
        await ledger.set_account_status(closed, "closed")
        return open_one, closed

    open_one, closed = await db.raw_transaction(accounts)
    before = await balance_rows(db, issuance)
    ref = uuid.uuid4().hex

    async def credit(conn: RawConnection) -> list[int]:
        return await Ledger(conn, system).post_credits(
            credit_rows(f"{ref}-o", open_one, 2) + credit_rows(f"{ref}-c", closed, 1),
            issuance=issuance, qualification=qualification, actor=TEST_ACTOR,
            source="test-batch")

    with pytest.raises(AccountClosed) as refused:
        await db.raw_transaction(credit)
    assert str(closed) in str(refused.value.detail or refused.value)
    assert await balance_rows(db, open_one) == {"MILES": 0, "STATUS_MILES": 0, "SEGMENTS": 0}
    assert await balance_rows(db, issuance) == before

    async def entries(conn: RawConnection) -> int:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM journal_entries WHERE external_ref LIKE $1", f"{ref}%")
        return count
    assert await db.raw_transaction(entries) == 0


async def test_a_unit_without_a_balance_row_refuses_the_batch(
        db: Database, system: SystemAccounts) -> None:
    issuance = system.pick(SystemAccount.ISSUANCE)
    qualification = system.pick(SystemAccount.QUALIFICATION)

    async def credit(conn: RawConnection) -> None:
        # An account with a MILES row only: its status miles have nowhere to go.
        account = await LedgerRepository(conn).insert_account("member", [Unit.MILES])
        await Ledger(conn, system).post_credits(
            credit_rows(uuid.uuid4().hex, account, 1), issuance=issuance,
            qualification=qualification, actor=TEST_ACTOR, source="test-batch")

    with pytest.raises(AccountNotFound):
        await db.raw_transaction(credit)


def test_the_totals_are_the_batch_sums_with_their_system_side() -> None:
    now = datetime.now(UTC)
    rows = [("r1", 10, 100, 50, 1, now, "", "{}", now, None),
            ("r2", 10, 30, 0, 1, now, "", "{}", now, 20),  # miles to a pool, 20
            ("r3", 11, 5, 5, 0, now, "", "{}", now, None)]
    assert credit_totals(rows, 1, 2) == {
        (10, "MILES"): 100, (10, "STATUS_MILES"): 50, (10, "SEGMENTS"): 2,
        (20, "MILES"): 30, (11, "MILES"): 5, (11, "STATUS_MILES"): 5,
        (1, "MILES"): -135, (2, "STATUS_MILES"): -55, (2, "SEGMENTS"): -2}


async def test_the_batch_update_finds_rows_by_key_one_by_one_in_ledger_order(
        db: Database) -> None:
    """Among 50,000 more accounts (added and rolled back), the UPDATE of a thousand
    accounts' rows is a nested loop over the sorted keys, each row by its primary key: no
    table read whole, and rows updated (so locked) in (account, unit) order, the order of
    every other posting, so concurrent batches and postings queue instead of deadlocking."""
    async def explain(conn: RawConnection, ids: list[int]) -> list[asyncpg.Record]:
        await conn.execute(BATCH_PLAN_SETTINGS)
        totals = {(a, u): 1 for a in ids for u in ("SEGMENTS", "MILES")}
        rows: list[asyncpg.Record] = await conn.fetch(
            "EXPLAIN (COSTS OFF) " + CREDIT_BATCH_BALANCES, *key_columns(totals))
        return rows

    text = await plan_among_many_accounts(db, explain)
    start = text.index("Update on balances")
    ends = [i for i in (text.find(e, start) for e in ("InitPlan", "CTE Scan on credited"))
            if i >= 0]
    update = text[start:min(ends)]
    assert "Nested Loop" in update, text
    for other in ("Hash", "Merge", "Bitmap", "Seq Scan"):
        assert other not in update, text
    assert "Index Scan using pk_balances" in update, text
    # The sorted keys drive the loop: its outer side is the CTE, sorted by (account, unit).
    assert update.index("CTE Scan on d") < update.index("Index Scan using pk_balances"), text
    assert "Sort Key: d.account_id, d.unit" in text, text
