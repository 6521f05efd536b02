"""The balance lock of a batch of credits (LOCK_BATCH_BALANCES) finds each account by key:
its cost follows the batch, not the number of accounts in the programme."""

from __future__ import annotations

from lms.db import Database, RawConnection
from lms.ledger.repository import LOCK_BATCH_BALANCES_ARRAYS, LedgerRepository, packed
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind
from tests.ledger.support import plan_among_many_accounts


async def test_the_batch_lock_reads_accounts_and_balances_by_key_only(db: Database) -> None:
    """Among 50,000 more accounts (added and rolled back), a batch's thousand keys are
    looked up one by one: the plan scans neither table whole."""
    text = await plan_among_many_accounts(db, lambda conn, ids: conn.fetch(
        "EXPLAIN (COSTS OFF) " + LOCK_BATCH_BALANCES_ARRAYS, packed(ids)))
    assert "Seq Scan on accounts" not in text and "Seq Scan on balances" not in text, text
    assert "Index Scan using pk_accounts" in text and "Index Scan using pk_balances" in text


async def test_the_batch_lock_answers_every_balance_row_in_ledger_order(
        db: Database, system: SystemAccounts) -> None:
    async def work(conn: RawConnection) -> tuple[list[int], list[tuple[int, str, int, str]]]:
        ledger = Ledger(conn, system)
        ids = [await ledger.open_account(AccountKind.MEMBER) for _ in range(3)]
        await ledger.set_account_status(ids[1], "closed")
        columns = await LedgerRepository(conn).lock_balances_for_credits(
            [ids[2], ids[0], ids[1], ids[2]])
        return ids, list(zip(*columns, strict=True))

    ids, rows = await db.raw_transaction(work)
    units = ["MILES", "SEGMENTS", "STATUS_MILES"]
    assert rows == [(a, u, 0, "closed" if a == ids[1] else "open")
                    for a in sorted(ids) for u in units]
