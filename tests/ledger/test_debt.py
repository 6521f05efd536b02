"""Member debt: a clawback takes back spent miles, later credits repay the debt first, and
debt blocks every way of spending until then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.ledger.errors import InsufficientMiles
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Unit
from tests.factories import TEST_ACTOR, funded_account

SOON = timedelta(hours=1)


async def miles(ledger: Ledger, account_id: int) -> tuple[int, int, int]:
    b = {x.unit: x for x in await ledger.balances(account_id)}[Unit.MILES]
    return b.posted, b.held, b.available


async def open_lots(ledger: Ledger, account_id: int) -> int:
    return sum(r["remaining"] for r in await ledger.open_lots(account_id, limit=100))


async def spent_then_clawed_back(ledger: Ledger) -> tuple[int, int]:
    """1,000 credited, 700 spent, the 1,000 clawed back: 300 left to take, 700 of debt."""
    account = await funded_account(ledger)
    credit = await ledger.credit(account, 1000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
    await ledger.debit(account, 700, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
    await ledger.reverse(credit.id, actor=TEST_ACTOR, reason="ticket refunded", clawback=True)
    return account, credit.id


async def test_clawback_of_spent_miles_leaves_debt_and_no_lots(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> tuple[tuple[int, int, int], int]:
        account, _ = await spent_then_clawed_back(ledger)
        return await miles(ledger, account), await open_lots(ledger, account)

    assert await in_ledger(scenario) == ((-700, 0, -700), 0)


async def test_a_reversal_without_clawback_still_refuses_spent_miles(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> None:
        account = await funded_account(ledger)
        credit = await ledger.credit(account, 1000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        await ledger.debit(account, 700, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        await ledger.reverse(credit.id, actor=TEST_ACTOR, reason="not a clawback")

    with pytest.raises(InsufficientMiles):
        await in_ledger(scenario)


@pytest.mark.parametrize("spend", ["debit", "hold", "transfer"])
async def test_debt_blocks_spending(in_ledger: Any, spend: str) -> None:
    async def scenario(ledger: Ledger) -> None:
        account, _ = await spent_then_clawed_back(ledger)
        await ledger.credit(account, 500, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        if spend == "debit":
            await ledger.debit(account, 1, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        elif spend == "hold":
            await ledger.create_hold(account, 1, actor=TEST_ACTOR,
                                     expires_at=datetime.now(UTC) + SOON)
        else:
            other = await funded_account(ledger)
            await ledger.transfer(account, other, 1, actor=TEST_ACTOR)

    with pytest.raises(InsufficientMiles):
        await in_ledger(scenario)


async def test_credits_repay_the_debt_before_opening_a_lot(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> list[tuple[tuple[int, int, int], int]]:
        account, _ = await spent_then_clawed_back(ledger)
        seen = []
        for amount in (500, 500):
            await ledger.credit(account, amount, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
            seen.append((await miles(ledger, account), await open_lots(ledger, account)))
        await ledger.debit(account, 300, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        seen.append((await miles(ledger, account), await open_lots(ledger, account)))
        return seen

    assert await in_ledger(scenario) == [((-200, 0, -200), 0), ((300, 0, 300), 300),
                                         ((0, 0, 0), 0)]


async def test_miles_held_before_a_clawback_can_still_be_captured(in_ledger: Any) -> None:
    """A partner that holds miles was promised them: the capture goes through and the
    member's debt is what the clawback could not take."""
    async def scenario(ledger: Ledger) -> list[tuple[int, int, int]]:
        account = await funded_account(ledger)
        credit = await ledger.credit(account, 1000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        hold = await ledger.create_hold(account, 800, actor=TEST_ACTOR,
                                        expires_at=datetime.now(UTC) + SOON)
        await ledger.reverse(credit.id, actor=TEST_ACTOR, reason="fraud", clawback=True)
        seen = [await miles(ledger, account)]
        await ledger.capture(hold.id, 600, actor=TEST_ACTOR)
        seen.append(await miles(ledger, account))
        return seen

    assert await in_ledger(scenario) == [(0, 800, -800), (-600, 0, -600)]


async def test_the_journal_marks_the_clawback(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> list[bool]:
        _, credit_id = await spent_then_clawed_back(ledger)
        assert isinstance(ledger.session, AsyncSession)
        rows = await ledger.session.execute(text(
            "SELECT details ? 'clawback' FROM journal_entries WHERE reverses_id = :id"),
            {"id": credit_id})
        return [bool(r[0]) for r in rows]

    assert await in_ledger(scenario) == [True]
