"""A flown coupon is a journal entry that balances on its own.

DESIGN §3, invariant 1: *every* entry sums to zero per unit. It is checked here with plain
SQL, not through ``lms ledger verify``, so that restating the invariant in verify (say, to
let a batch of coupons balance together) cannot make this test pass: a coupon's own entry
must carry its system legs, so that it reads, reverses and audits on its own.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.importer import import_flights
from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind
from tests.accrual.support import distance_carrier, make_member
from tests.accrual.test_import import write_feed
from tests.factories import TEST_ACTOR

UNBALANCED = """
SELECT entry_id, unit, sum(amount) FROM postings
GROUP BY entry_id, unit HAVING sum(amount) <> 0
"""

ENTRIES_WITHOUT_SYSTEM_LEGS = """
SELECT e.id FROM journal_entries e
WHERE e.source = 'flight' AND NOT EXISTS (
  SELECT 1 FROM postings p JOIN accounts a ON a.id = p.account_id
  WHERE p.entry_id = e.id AND a.kind = 'system')
"""


async def test_every_imported_coupon_is_an_entry_that_sums_to_zero_per_unit(
        db: Database, system: SystemAccounts, tmp_path: Path) -> None:
    carrier = await distance_carrier(db)
    members = [await make_member(db, system) for _ in range(3)]
    feed = tmp_path / "flown.csv"
    write_feed(feed, members, carrier, 40)

    summary = await import_flights(db, system, feed, batch_size=16, concurrency=2,
                                   progress=None, reevaluate_tiers=False)
    assert summary.credited == 40

    async def read(session: AsyncSession) -> tuple[int, list[object], list[object]]:
        # The suite's database is shared: this test's flights are its own carrier's.
        flights = (await session.execute(
            text("SELECT count(*) FROM journal_entries WHERE source = 'flight' "
                 "AND details->>'flight' LIKE :carrier || '%'"),
            {"carrier": carrier})).scalar_one()
        unbalanced: list[object] = list((await session.execute(text(UNBALANCED))).all())
        lonely: list[object] = list(
            (await session.execute(text(ENTRIES_WITHOUT_SYSTEM_LEGS))).all())
        return flights, unbalanced, lonely

    flights, unbalanced, lonely = await db.transaction(read)
    assert flights == 40
    assert unbalanced == []
    assert lonely == []


# Every posting of the accounts an import touched, from the import's first posting on, whose
# balance_after is not the one before it plus its amount (the statement takes each leg's
# balance_after from the client, which runs them from the balances as locked).
BROKEN_CHAIN = """
SELECT id, account_id, unit FROM (
  SELECT p.id, p.account_id, p.unit, p.amount, p.balance_after,
         lag(p.balance_after) OVER (PARTITION BY p.account_id, p.unit ORDER BY p.id) AS before
  FROM postings p
  WHERE p.id >= :first AND p.account_id IN (
    SELECT q.account_id FROM postings q JOIN journal_entries e ON e.id = q.entry_id
    WHERE e.source = 'flight' AND e.details->>'flight' LIKE :carrier || '%')
) x WHERE before IS NOT NULL AND balance_after <> before + amount
"""

FLIGHT_POSTINGS = """
SELECT p.account_id, p.unit, p.amount, p.balance_after FROM postings p
JOIN journal_entries e ON e.id = p.entry_id
WHERE e.source = 'flight' AND e.details->>'flight' LIKE :carrier || '%' AND p.account_id = :account
ORDER BY p.id
"""


async def test_each_leg_carries_its_running_balance_and_a_debt_is_repaid_before_a_lot(
        db: Database, system: SystemAccounts, tmp_path: Path) -> None:
    carrier = await distance_carrier(db)
    members = [await make_member(db, system) for _ in range(3)]
    indebted = members[0]

    async def into_debt(session: AsyncSession) -> int:
        ledger = Ledger(session, system)
        credit = await ledger.credit(indebted.account_id, 1000, kind=EntryKind.ACCRUAL,
                                     actor=TEST_ACTOR)
        await ledger.debit(indebted.account_id, 700, kind=EntryKind.REDEMPTION,
                           actor=TEST_ACTOR)
        await ledger.reverse(credit.id, actor=TEST_ACTOR, reason="refunded", clawback=True)
        first: int = (await session.execute(text("SELECT max(id) FROM postings"))).scalar_one()
        return first + 1

    first = await db.transaction(into_debt)
    feed = tmp_path / "flown.csv"
    write_feed(feed, members, carrier, 30)  # ten coupons each, several to a batch

    summary = await import_flights(db, system, feed, batch_size=8, concurrency=2,
                                   progress=None, reevaluate_tiers=False)
    assert summary.credited == 30

    async def read(session: AsyncSession) -> tuple[list[Any], list[Any], int, int]:
        broken = list((await session.execute(
            text(BROKEN_CHAIN), {"first": first, "carrier": carrier})).all())
        legs = list((await session.execute(
            text(FLIGHT_POSTINGS), {"carrier": carrier, "account": indebted.account_id})).all())
        lots = (await session.execute(text(
            "SELECT COALESCE(sum(amount), 0) FROM lots l JOIN journal_entries e "
            "ON e.id = l.entry_id WHERE l.account_id = :account AND e.source = 'flight'"),
            {"account": indebted.account_id})).scalar_one()
        posted = (await session.execute(text(
            "SELECT posted FROM balances WHERE account_id = :account AND unit = 'MILES'"),
            {"account": indebted.account_id})).scalar_one()
        return broken, legs, lots, posted

    broken, legs, lots, posted = await db.transaction(read)
    assert broken == []
    miles = [leg for leg in legs if leg.unit == "MILES"]
    assert len(miles) == 10
    # From the debt of 700, each credit's balance_after runs on from the one before.
    running = -700
    for leg in miles:
        running += leg.amount
        assert leg.balance_after == running
    assert posted == running
    # What repaid the 700 of debt opened no lot; the rest did.
    assert lots == sum(leg.amount for leg in miles) - 700
    for unit in ("STATUS_MILES", "SEGMENTS"):
        chain = [leg for leg in legs if leg.unit == unit]
        assert [leg.balance_after for leg in chain] == list(
            itertools.accumulate(leg.amount for leg in chain))
