"""The journal as the feed of miles events: what the relay hands over for ledger entries,
exactly once per committed entry, whatever order concurrent transactions commit in."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind, SystemAccount
from lms.outbox.relay import ALL_TOPICS, ConsumerRegistry, relay
from lms.outbox.repository import Event
from lms.outbox.service import emit
from tests.conftest import LedgerRunner
from tests.factories import TEST_ACTOR, funded_account

FEED_TIMEOUT = 60.0


class Recorder:
    """A consumer of every topic that keeps the events of some accounts."""

    def __init__(self, *accounts: int) -> None:
        self.accounts = set(accounts)
        self.events: list[Event] = []
        self.fail = False

    async def __call__(self, event: Event) -> None:
        if event.payload.get("accountId") in self.accounts:
            if self.fail:
                raise RuntimeError("consumer down")
            self.events.append(event)

    def registry(self) -> ConsumerRegistry:
        registry = ConsumerRegistry()
        registry.register(ALL_TOPICS, self)
        return registry

    async def relay_until(self, db: Database, count: int, **kwargs: Any) -> None:
        """Relay until this many events of the accounts came. The journal's horizon is the
        whole server's: a transaction open anywhere on it (other test runs share it) holds
        the feed back for a while, and a backlog of earlier tests' entries comes first."""
        deadline = time.monotonic() + FEED_TIMEOUT
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} of {count} events came"
            await relay(db, self.registry(), **kwargs)

    async def skip(self, db: Database, count: int) -> None:
        """Relay until the set-up's own events (this many) came, then forget them."""
        await self.relay_until(db, count)
        self.events.clear()

    def seen(self) -> list[tuple[str, int, str, int]]:
        return [(e.topic, e.payload["accountId"], e.payload["unit"], e.payload["amount"])
                for e in self.events]


async def posting_ids(db: Database, entry_id: int) -> dict[int, int]:
    async def read(session: AsyncSession) -> dict[int, int]:
        rows = await session.execute(
            text("SELECT id, account_id FROM postings WHERE entry_id = :e"), {"e": entry_id})
        return {r.account_id: r.id for r in rows}
    return await db.transaction(read)


async def test_a_transfer_gives_one_event_per_member_leg_once(
        db: Database, in_ledger: LedgerRunner[Any]) -> None:
    giver = await in_ledger(lambda ledger: funded_account(ledger, 1000))
    taker = await in_ledger(lambda ledger: funded_account(ledger))
    recorder = Recorder(giver, taker)
    await recorder.skip(db, 1)  # the giver's funding

    entry = await in_ledger(lambda ledger: ledger.transfer(giver, taker, 300, actor=TEST_ACTOR))
    await recorder.relay_until(db, 2)

    assert recorder.seen() == [("miles.debited", giver, "MILES", -300),
                               ("miles.credited", taker, "MILES", 300)]
    ids = await posting_ids(db, entry.id)
    debited, credited = recorder.events
    assert (debited.id, credited.id) == (-ids[giver], -ids[taker])
    assert debited.payload == {"entryId": entry.id, "accountId": giver, "unit": "MILES",
                               "amount": -300, "kind": "transfer", "balanceAfter": 700}
    assert credited.payload["balanceAfter"] == 300
    # Handed over once: a later run finds nothing new for these accounts.
    await relay(db, recorder.registry())
    assert len(recorder.events) == 2


async def test_flown_coupons_give_one_event_each_with_their_status(
        db: Database, system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    member = await in_ledger(lambda ledger: funded_account(ledger))
    pool = await in_ledger(lambda ledger: funded_account(ledger))
    recorder = Recorder(member, pool)
    now = datetime.now(UTC)
    later = now + timedelta(days=365)

    issuance = system.pick(SystemAccount.ISSUANCE)
    qualification = system.pick(SystemAccount.QUALIFICATION)

    async def credit(ledger: Ledger) -> list[int]:
        ref = uuid.uuid4().hex
        rows = [(f"{ref}-1", member, 1000, 800, 1, now, "coupon 1", json.dumps({}), later),
                (f"{ref}-2", member, 500, 400, 1, now, "coupon 2", json.dumps({}), later),
                # A pool's coupon: the miles go to the pool, the status stays the member's.
                (f"{ref}-3", member, 200, 100, 1, now, "coupon 3", json.dumps({}), later, pool)]
        return await ledger.post_credits(
            [r[:9] + ((r[9],) if len(r) > 9 else (None,)) for r in rows],
            issuance=issuance, qualification=qualification, actor=TEST_ACTOR, source=f"test-{ref}")
    entries = await in_ledger(credit)
    await recorder.relay_until(db, 5)

    assert [(e.topic, e.payload["entryId"], e.payload["accountId"], e.payload["amount"],
             e.payload.get("statusMiles"), e.payload.get("segments"))
            for e in recorder.events] == [
        ("miles.credited", entries[0], member, 1000, 800, 1),
        ("miles.credited", entries[1], member, 500, 400, 1),
        ("miles.credited", entries[2], pool, 200, None, None),
        ("miles.credited", entries[2], member, 100, None, None),
        ("miles.credited", entries[2], member, 1, None, None)]
    assert [e.payload["unit"] for e in recorder.events[2:]] == [
        "MILES", "STATUS_MILES", "SEGMENTS"]
    assert recorder.events[1].payload["balanceAfter"] == 1500
    assert {e.payload["kind"] for e in recorder.events} == {"accrual"}


async def test_an_entry_committed_late_is_not_skipped(
        db: Database, system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    """A transaction that wrote an entry first but commits after a later one: its entry
    cannot be handed over before it commits, and must not be passed over once it does."""
    a, b, c, d = [await in_ledger(lambda ledger: funded_account(ledger, 100)) for _ in range(4)]
    recorder = Recorder(a, b, c, d)
    await recorder.skip(db, 4)

    # Member to member only: no system row for the two transactions to queue on.
    async with db.sessions() as session, session.begin():
        await Ledger(session, system).transfer(a, b, 10, actor=TEST_ACTOR)
        # Committed while the early transaction is still open.
        await in_ledger(lambda ledger: ledger.transfer(c, d, 20, actor=TEST_ACTOR))
        await relay(db, recorder.registry(), settle_seconds=0)
        assert recorder.seen() == []
    await recorder.relay_until(db, 4)
    assert sorted(recorder.seen()) == sorted([
        ("miles.debited", a, "MILES", -10), ("miles.credited", b, "MILES", 10),
        ("miles.debited", c, "MILES", -20), ("miles.credited", d, "MILES", 20)])


async def test_a_rolled_back_entry_gives_no_event(
        db: Database, system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    account = await in_ledger(lambda ledger: funded_account(ledger, 100))
    recorder = Recorder(account)
    await recorder.skip(db, 1)

    class Abandon(Exception):
        pass

    async def abandoned(session: AsyncSession) -> None:
        await Ledger(session, system).debit(account, 10, kind=EntryKind.ADJUSTMENT,
                                            actor=TEST_ACTOR)
        raise Abandon()
    with pytest.raises(Abandon):
        await db.transaction(abandoned)
    await in_ledger(lambda ledger: ledger.debit(
        account, 30, kind=EntryKind.ADJUSTMENT, actor=TEST_ACTOR))
    await recorder.relay_until(db, 1)
    assert recorder.seen() == [("miles.debited", account, "MILES", -30)]


async def test_a_failing_consumer_gets_the_same_events_again(
        db: Database, in_ledger: LedgerRunner[Any]) -> None:
    account = await in_ledger(lambda ledger: funded_account(ledger))
    recorder = Recorder(account)
    await in_ledger(lambda ledger: ledger.credit(
        account, 70, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR))
    recorder.fail = True
    deadline = time.monotonic() + FEED_TIMEOUT
    with pytest.raises(RuntimeError):
        while time.monotonic() < deadline:
            await relay(db, recorder.registry())
    recorder.fail = False
    await recorder.relay_until(db, 1)
    await relay(db, recorder.registry())
    assert recorder.seen() == [("miles.credited", account, "MILES", 70)]


async def test_concurrent_relays_hand_each_journal_event_over_once(
        db: Database, in_ledger: LedgerRunner[Any]) -> None:
    accounts = [await in_ledger(lambda ledger: funded_account(ledger, 1000)) for _ in range(4)]
    recorder = Recorder(*accounts)
    await recorder.skip(db, 4)
    topic = f"test.feed.{uuid.uuid4().hex[:8]}"

    async def outbox_events(session: AsyncSession) -> None:
        for n in range(5):
            await emit(session, topic, {"n": n, "accountId": accounts[0]})
    await db.transaction(outbox_events)

    async def transfers(ledger: Ledger) -> None:
        for n in range(12):
            await ledger.transfer(accounts[n % 4], accounts[(n + 1) % 4], 10 + n,
                                  actor=TEST_ACTOR)
    await in_ledger(transfers)

    await asyncio.gather(*(relay(db, recorder.registry(), batch_size=3) for _ in range(3)))
    await recorder.relay_until(db, 29)
    await relay(db, recorder.registry())
    counts = Counter(e.id for e in recorder.events)
    assert set(counts.values()) == {1}
    assert len([i for i in counts if i < 0]) == 24
    assert len([i for i in counts if i > 0]) == 5
