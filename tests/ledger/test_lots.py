"""Which lots a debit consumes: oldest expiry first, then oldest lot, whether the first open lot
covers the debit (ledger_post()'s write statement) or not (its second statement)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind
from tests.factories import TEST_ACTOR, funded_account

SOON = datetime(2030, 1, 1, tzinfo=UTC)


async def lots_of(ledger: Ledger, account: int) -> list[tuple[int, int]]:
    """(amount, remaining) of every lot of the account, used up or not, in id order."""
    rows = await (await ledger.repo()).conn.fetch(
        "SELECT amount, remaining FROM lots WHERE account_id = $1 ORDER BY id", account)
    return [(r["amount"], r["remaining"]) for r in rows]


async def account_with_lots(ledger: Ledger, *days: int) -> int:
    """A member with a lot of 100 miles per entry of ``days``, expiring that many days after
    SOON, credited in this order."""
    account = await funded_account(ledger)
    for d in days:
        await ledger.credit(account, 100, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            lot_expires_at=SOON + timedelta(days=d))
    return account


async def test_a_debit_the_first_lot_covers_takes_only_from_it(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> list[tuple[int, int]]:
        # Credited later but expiring first: it is the first lot.
        account = await account_with_lots(ledger, 30, 20, 10)
        await ledger.debit(account, 100, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        await ledger.debit(account, 40, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        return await lots_of(ledger, account)

    assert await in_ledger(scenario) == [(100, 100), (100, 60), (100, 0)]


async def test_a_debit_beyond_the_first_lot_takes_oldest_expiry_first(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> list[tuple[int, int]]:
        account = await account_with_lots(ledger, 30, 10, 20, 40)
        await ledger.debit(account, 30, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        # The 70 left in the lot expiring first, all of the next, then 30 of the third.
        await ledger.debit(account, 200, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        return await lots_of(ledger, account)

    assert await in_ledger(scenario) == [(100, 70), (100, 0), (100, 0), (100, 100)]


async def test_a_transfer_consumes_the_sender_and_opens_a_lot_for_the_receiver(
        in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        sender = await account_with_lots(ledger, 10, 20)
        receiver = await account_with_lots(ledger, 5)
        await ledger.transfer(sender, receiver, 150, actor=TEST_ACTOR,
                              lot_expires_at=SOON + timedelta(days=50))
        await ledger.transfer(receiver, sender, 120, actor=TEST_ACTOR)
        return await lots_of(ledger, sender), await lots_of(ledger, receiver)

    # The receiver spends its own lot (expiring first) before the one the transfer opened.
    assert await in_ledger(scenario) == ([(100, 0), (100, 50), (120, 120)],
                                         [(100, 0), (150, 130)])


async def test_a_debit_larger_than_every_lot_of_an_account_in_debt_empties_them(
        in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> list[tuple[int, int]]:
        account = await account_with_lots(ledger, 10, 20)
        entry = await ledger.credit(account, 100, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                                    lot_expires_at=SOON + timedelta(days=30))
        await ledger.debit(account, 250, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        # Taking back the 100 credited leaves 50 of debt and no open lot.
        await ledger.reverse(entry.id, actor=TEST_ACTOR, reason="test", clawback=True)
        return await lots_of(ledger, account)

    assert await in_ledger(scenario) == [(100, 0), (100, 0), (100, 0)]
