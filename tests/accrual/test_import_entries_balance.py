"""A flown coupon is a journal entry that balances on its own.

DESIGN §3, invariant 1: *every* entry sums to zero per unit. It is checked here with plain
SQL, not through ``lms ledger verify``, so that restating the invariant in verify (say, to
let a batch of coupons balance together) cannot make this test pass: a coupon's own entry
must carry its system legs, so that it reads, reverses and audits on its own.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.importer import import_flights
from lms.db import Database
from lms.ledger.service import SystemAccounts
from tests.accrual.support import distance_carrier, make_member
from tests.accrual.test_import import write_feed

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
