"""What consumers of the outbox hear of a partner accrual and its reversal: one miles event
for the member each (from the journal), and the partner's own ``accrual.reversed``."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.outbox.relay import relay
from lms.settings import Settings
from tests.factories import register_member
from tests.outbox.test_journal_feed import FEED_TIMEOUT, Recorder
from tests.partners.support import (
    accrual_body,
    accrue,
    admin_headers,
    issue_key,
    make_partner,
    reverse,
)


async def account_of(db: Database, card: str) -> int:
    async def read(session: AsyncSession) -> int:
        return int((await session.execute(text(
            "SELECT account_id FROM members WHERE card_number = :c"), {"c": card})
        ).scalar_one())
    return await db.transaction(read)


async def relay_until_journal(db: Database, recorder: Recorder, entries: int) -> None:
    """Relay until the journal's events of this many entries came (journal events have
    negative ids), then once more: whatever else was waiting for the account is in too."""
    deadline = time.monotonic() + FEED_TIMEOUT
    while len({e.payload.get("entryId") for e in recorder.events if e.id < 0}) < entries:
        assert time.monotonic() < deadline, recorder.events
        await relay(db, recorder.registry())
    await relay(db, recorder.registry())


@pytest.fixture
async def shop(client: httpx.AsyncClient, db: Database, settings: Settings
               ) -> dict[str, Any]:
    admin = await admin_headers(db, settings)
    partner = await make_partner(client, admin)
    return {"partner": partner, "key": await issue_key(client, admin, partner["code"])}


async def test_an_accrual_and_its_reversal_give_one_miles_event_each(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any]) -> None:
    card = (await register_member(client))["member"]["cardNumber"]
    account = await account_of(db, card)
    recorder = Recorder(account)

    body = accrual_body(card, amount=12345)
    credited = await accrue(client, shop["key"], body)
    assert credited.status_code == 201, credited.text
    await relay_until_journal(db, recorder, 1)
    assert [(e.topic, e.payload["amount"], e.payload["entryId"]) for e in recorder.events] \
        == [("miles.credited", 185, credited.json()["id"])]

    recorder.events.clear()
    reversed_ = await reverse(client, shop["key"], body["partnerTxnId"])
    assert reversed_.status_code == 201, reversed_.text
    await relay_until_journal(db, recorder, 1)
    assert [(e.topic, e.payload["amount"], e.payload["entryId"]) for e in recorder.events] \
        == [("miles.debited", -185, reversed_.json()["id"])]
