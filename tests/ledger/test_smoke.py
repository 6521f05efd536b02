"""The ledger's basic operations, one at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lms.errors import ValidationFailed
from lms.ledger.errors import InsufficientMiles
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Unit
from tests.factories import TEST_ACTOR, funded_account


async def test_credit_transfer_hold_capture(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> tuple[int, int]:
        a = await funded_account(ledger, 1000)
        b = await funded_account(ledger)
        await ledger.transfer(a, b, 300, actor=TEST_ACTOR)
        hold = await ledger.create_hold(a, 500, actor=TEST_ACTOR,
                                        expires_at=datetime.now(UTC) + timedelta(hours=1))
        await ledger.capture(hold.id, 200, actor=TEST_ACTOR)
        return a, b

    a, b = await in_ledger(scenario)

    async def read(ledger: Ledger) -> dict[str, int]:
        ba = {x.unit: x for x in await ledger.balances(a)}[Unit.MILES]
        bb = {x.unit: x for x in await ledger.balances(b)}[Unit.MILES]
        return {"a_posted": ba.posted, "a_held": ba.held, "b": bb.posted}

    assert await in_ledger(read) == {"a_posted": 500, "a_held": 0, "b": 300}


async def test_debit_beyond_available_is_refused(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> None:
        a = await funded_account(ledger, 100)
        await ledger.debit(a, 101, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)

    with pytest.raises(InsufficientMiles):
        await in_ledger(scenario)


async def test_hold_longer_than_the_maximum_is_refused(in_ledger: Any) -> None:
    async def scenario(ledger: Ledger) -> None:
        a = await funded_account(ledger, 100)
        await ledger.create_hold(a, 10, actor=TEST_ACTOR,
                                 expires_at=datetime.now(UTC) + timedelta(days=7, minutes=1))

    with pytest.raises(ValidationFailed):
        await in_ledger(scenario)
