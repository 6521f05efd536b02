"""A hypothesis state machine over the ledger: random sequences of credits, debits, transfers,
holds (some already due), captures (full, partial, too large), voids, reads that expire a due
hold, the hold expiry job, lot expiry and reversals, on a few accounts.

A pure-Python model keeps posted, held and available per account, the lots in consumption
order (oldest expiry first, then oldest lot), the holds, the entries and the totals of the
system accounts. After every step the database must match the model exactly and ``verify``
must find nothing; a step the model expects to fail must raise exactly that error and leave
the database byte for byte as it was.

The machine has a database of its own (so that the hold expiry job's counts are exact) and an
event loop of its own: the test is a plain function and runs each step to completion.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import raw_connection
from lms.errors import LmsError
from lms.ledger.errors import (
    AlreadyReversed,
    CaptureExceedsHold,
    DuplicateExternalReference,
    HoldExpired,
    HoldNotPending,
    InsufficientMiles,
    InvalidAmount,
    NotReversible,
)
from lms.ledger.service import Ledger
from lms.ledger.types import AccountKind, EntryKind, HoldStatus, HoldView, PostedEntry, Unit
from tests.conftest import drop_database, migrated_database
from tests.factories import TEST_ACTOR
from tests.ledger.support import LedgerHarness

T = TypeVar("T")
SOURCE = "machine"
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
LOT_DAYS = [-30, -10, -1, 1, 400, 800]          # lot expiries, relative to the example's start
HOLD_HOURS = [1, 48, 150, -1]                   # hold expiries (-1: due on creation)
HOLD_CLOCK_HOURS = [0, 2, 72, 200]              # clocks for the hold expiry job
LOT_CLOCK_DAYS = [0, 2, 500, 900]               # clocks for the lot expiry job
MEMBER_ACCOUNTS = 3
FUNDING = [(-10, 200), (1, 300), (400, 500)]     # (lot expiry in days, miles) per account

amounts = st.one_of(st.integers(1, 300), st.sampled_from([1, 500, 1000, 5000]))


@dataclass
class LotModel:
    expires_at: datetime
    amount: int
    remaining: int


@dataclass
class AccountModel:
    posted: dict[Unit, int] = field(default_factory=lambda: dict.fromkeys(Unit, 0))
    held: int = 0
    lots: list[LotModel] = field(default_factory=list)  # in creation (id) order

    @property
    def available(self) -> int:
        return self.posted[Unit.MILES] - self.held


@dataclass
class HoldModel:
    account_id: int
    amount: int
    expires_at: datetime
    status: HoldStatus = HoldStatus.PENDING
    captured: int = 0


@dataclass
class EntryModel:
    legs: list[tuple[int, Unit, int]]  # (account id, unit, amount), system legs included
    reverses: int | None
    reversed: bool = False


class LedgerMachine(RuleBasedStateMachine):
    loop: ClassVar[asyncio.AbstractEventLoop]
    harness: ClassVar[LedgerHarness]

    accounts = Bundle("accounts")
    holds = Bundle("holds")
    entries = Bundle("entries")

    def __init__(self) -> None:
        super().__init__()
        self.t0 = datetime.now(UTC)
        self.tag = uuid.uuid4().hex[:10]
        self.model: dict[int, AccountModel] = {}
        self.hold_models: dict[int, HoldModel] = {}
        self.entry_models: dict[int, EntryModel] = {}
        self.refs: set[str] = set()
        self.system_codes: dict[int, str] = {
            account_id: code for code, ids in self.harness.system._ids.items()
            for account_id in ids}
        self.system_totals: dict[tuple[str, Unit], int] = self.run(self.read_system_totals())

    # -- plumbing ------------------------------------------------------------------------------

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def ledger(self, fn: Callable[[Ledger], Awaitable[T]]) -> T:
        return self.run(self.harness.run(fn))

    def attempt(self, fn: Callable[[Ledger], Awaitable[T]],
                expected: type[LmsError] | None) -> T | None:
        """Run one operation; if the model expects ``expected``, it must raise exactly that and
        change nothing at all. Returns the result, or None after the expected error."""
        event(f"refused: {expected.__name__}" if expected else "applied")
        before = self.run(self.fingerprint()) if expected else None
        try:
            result = self.ledger(fn)
        except LmsError as exc:
            assert expected is not None, f"unexpected {exc!r}"
            assert type(exc) is expected, f"expected {expected.__name__}, got {exc!r}"
            assert self.run(self.fingerprint()) == before, "a failed operation left changes"
            return None
        assert expected is None, f"expected {expected.__name__}, but it succeeded: {result!r}"
        return result

    async def read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def work(session: AsyncSession) -> T:
            return await fn(await raw_connection(session))

        return await self.harness.db.transaction(work)

    async def fingerprint(self) -> dict[str, Any]:
        """Everything a failed operation could have touched, anywhere in the database."""

        async def read(conn: Any) -> dict[str, Any]:
            row = await conn.fetchrow("""
                SELECT (SELECT count(*) FROM journal_entries) AS entries,
                       (SELECT count(*) FROM postings) AS postings,
                       (SELECT count(*) FROM outbox_events) AS events,
                       (SELECT md5(string_agg(b::text, ',' ORDER BY account_id, unit))
                        FROM balances b) AS balances,
                       (SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM lots l) AS lots,
                       (SELECT md5(string_agg(h::text, ',' ORDER BY id)) FROM holds h) AS holds
            """)
            return dict(row)

        return await self.read(read)

    async def read_system_totals(self) -> dict[tuple[str, Unit], int]:
        async def read(conn: Any) -> dict[tuple[str, Unit], int]:
            rows = await conn.fetch(
                "SELECT a.code, b.unit, sum(b.posted)::bigint AS total FROM balances b "
                "JOIN accounts a ON a.id = b.account_id WHERE a.kind = 'system' "
                "GROUP BY a.code, b.unit")
            totals: dict[tuple[str, Unit], int] = defaultdict(int)
            totals.update({(r["code"], Unit(r["unit"])): r["total"] for r in rows})
            return totals

        return await self.read(read)

    def now(self) -> datetime:
        return datetime.now(UTC)

    # -- the model's rules -----------------------------------------------------------------------

    def apply(self, legs: list[tuple[int, Unit, int]], lot_expires_at: datetime | None) -> None:
        """Move the model's balances and lots as ``Ledger.post`` must."""
        for account_id, unit, amount in legs:
            if account_id in self.system_codes:
                self.system_totals[(self.system_codes[account_id], unit)] += amount
                continue
            acct = self.model[account_id]
            acct.posted[unit] += amount
            if unit is not Unit.MILES:
                continue
            if amount > 0:
                assert lot_expires_at is not None
                acct.lots.append(LotModel(lot_expires_at, amount, amount))
            else:
                self.consume(acct, -amount)

    @staticmethod
    def consume(acct: AccountModel, amount: int) -> None:
        order = sorted(range(len(acct.lots)), key=lambda i: (acct.lots[i].expires_at, i))
        for i in order:
            lot = acct.lots[i]
            take = min(lot.remaining, amount)
            lot.remaining -= take
            amount -= take
            if amount == 0:
                return
        raise AssertionError("the model consumed more than its lots")

    def affordable(self, legs: list[tuple[int, Unit, int]], release: int = 0) -> bool:
        for account_id, unit, amount in legs:
            if account_id in self.system_codes:
                continue
            acct = self.model[account_id]
            held = acct.held - release if unit is Unit.MILES else 0
            if acct.posted[unit] + amount - held < 0:
                return False
        return True

    def record(self, entry: PostedEntry, legs: list[tuple[int | str, Unit, int]],
               kind: EntryKind, lot_expires_at: datetime | None = None,
               reverses: int | None = None) -> int:
        """Check the entry the database wrote against the expected legs (a system account
        given by its code), move the model, and remember the entry with its real accounts."""

        async def read(conn: Any) -> tuple[Any, list[Any]]:
            header = await conn.fetchrow(
                "SELECT kind, reverses_id FROM journal_entries WHERE id = $1", entry.id)
            postings = await conn.fetch(
                "SELECT account_id, unit, amount, balance_after FROM postings "
                "WHERE entry_id = $1 ORDER BY id", entry.id)
            return header, postings

        header, postings = self.run(self.read(read))
        assert (header["kind"], header["reverses_id"]) == (str(kind), reverses)
        written = [(self.system_codes.get(p["account_id"], p["account_id"]), Unit(p["unit"]),
                    p["amount"]) for p in postings]
        assert sorted(written, key=str) == sorted(legs, key=str), (written, legs)
        real = [(p["account_id"], Unit(p["unit"]), p["amount"]) for p in postings]
        self.apply(real, lot_expires_at)
        for p in postings:
            if p["account_id"] in self.model:
                expected = self.model[p["account_id"]].posted[Unit(p["unit"])]
                assert p["balance_after"] == expected
                assert entry.balances[(p["account_id"], Unit(p["unit"]))] == expected
        self.entry_models[entry.id] = EntryModel(real, reverses)
        return entry.id

    def post_and_record(self, fn: Callable[[Ledger], Awaitable[PostedEntry]],
                        legs: list[tuple[int | str, Unit, int]], kind: EntryKind,
                        lot_expires_at: datetime | None, expected: type[LmsError] | None,
                        reverses: int | None = None) -> Any:
        entry = self.attempt(fn, expected)
        if entry is None:
            return multiple()
        return self.record(entry, legs, kind, lot_expires_at, reverses)

    # -- setup -----------------------------------------------------------------------------------

    @initialize(target=accounts)
    def open_accounts(self) -> Any:
        async def open_all(ledger: Ledger) -> list[int]:
            kinds = [AccountKind.MEMBER] * MEMBER_ACCOUNTS + [AccountKind.POOL]
            return [await ledger.open_account(kind) for kind in kinds]

        ids = self.ledger(open_all)
        for account_id in ids:
            self.model[account_id] = AccountModel()
            # Start with miles in lots already due, due soon and far off, so that holds,
            # debits and expiry have something to work on from the first step.
            for days, amount in FUNDING:
                self.credit(account_id, amount, days, Unit.MILES, None)
        return multiple(*ids)

    # -- postings --------------------------------------------------------------------------------

    @rule(target=entries, account=accounts, amount=amounts, days=st.sampled_from(LOT_DAYS),
          unit=st.sampled_from([Unit.MILES] * 4 + [Unit.STATUS_MILES]),
          ref=st.none() | st.sampled_from(["a", "b", "c"]))
    def credit(self, account: int, amount: int, days: int, unit: Unit, ref: str | None) -> Any:
        external_ref = f"{self.tag}-{ref}" if ref else None
        expected = DuplicateExternalReference if external_ref in self.refs else None
        expires = self.t0 + timedelta(days=days)
        result = self.post_and_record(
            lambda ledger: ledger.credit(account, amount, kind=EntryKind.ACCRUAL,
                                         actor=TEST_ACTOR, unit=unit, source=SOURCE,
                                         external_ref=external_ref, lot_expires_at=expires),
            [("issuance", unit, -amount), (account, unit, amount)], EntryKind.ACCRUAL,
            expires, expected)
        if external_ref and not expected:
            self.refs.add(external_ref)
        return result

    @rule(target=entries, account=accounts, amount=amounts,
          unit=st.sampled_from([Unit.MILES] * 4 + [Unit.STATUS_MILES]),
          ref=st.none() | st.sampled_from(["a", "b", "c"]))
    def debit(self, account: int, amount: int, unit: Unit, ref: str | None) -> Any:
        external_ref = f"{self.tag}-{ref}" if ref else None
        legs: list[tuple[int | str, Unit, int]] = [(account, unit, -amount),
                                                   ("redemptions", unit, amount)]
        expected: type[LmsError] | None = None
        if external_ref in self.refs:
            expected = DuplicateExternalReference  # a replay is a duplicate, funds or not
        elif not self.affordable([(account, unit, -amount)]):
            expected = InsufficientMiles
        result = self.post_and_record(
            lambda ledger: ledger.debit(account, amount, kind=EntryKind.REDEMPTION,
                                        actor=TEST_ACTOR, unit=unit, source=SOURCE,
                                        external_ref=external_ref),
            legs, EntryKind.REDEMPTION, None, expected)
        if external_ref and not expected:
            self.refs.add(external_ref)
        return result

    @rule(target=entries, source=accounts, destination=accounts, amount=amounts,
          days=st.sampled_from(LOT_DAYS))
    def transfer(self, source: int, destination: int, amount: int, days: int) -> Any:
        expected: type[LmsError] | None = None
        if source == destination:
            expected = InvalidAmount
        elif not self.affordable([(source, Unit.MILES, -amount)]):
            expected = InsufficientMiles
        expires = self.t0 + timedelta(days=days)
        return self.post_and_record(
            lambda ledger: ledger.transfer(source, destination, amount, actor=TEST_ACTOR,
                                           lot_expires_at=expires),
            [(source, Unit.MILES, -amount), (destination, Unit.MILES, amount)],
            EntryKind.TRANSFER, expires, expected)

    @rule(target=entries, entry=entries, days=st.sampled_from(LOT_DAYS))
    def reverse(self, entry: int, days: int) -> Any:
        original = self.entry_models[entry]
        negated = [(a, u, -n) for a, u, n in original.legs]
        expected: type[LmsError] | None = None
        if original.reverses is not None:
            expected = NotReversible
        elif original.reversed:
            expected = AlreadyReversed
        elif not self.affordable(negated):
            expected = InsufficientMiles
        expires = self.t0 + timedelta(days=days)
        legs: list[tuple[int | str, Unit, int]] = [
            (self.system_codes.get(a, a), u, n) for a, u, n in negated]
        result = self.post_and_record(
            lambda ledger: ledger.reverse(entry, actor=TEST_ACTOR, reason="machine",
                                          lot_expires_at=expires),
            legs, EntryKind.REVERSAL, expires, expected, reverses=entry)
        if expected is None:
            original.reversed = True
        return result

    # -- holds -----------------------------------------------------------------------------------

    @rule(target=holds, account=accounts, amount=st.integers(1, 600),
          hours=st.sampled_from(HOLD_HOURS))
    def hold(self, account: int, amount: int, hours: int) -> Any:
        acct = self.model[account]
        expected = InsufficientMiles if acct.available < amount else None
        expires = self.t0 + timedelta(hours=hours)
        view = self.attempt(lambda ledger: ledger.create_hold(
            account, amount, actor=TEST_ACTOR, expires_at=expires, reference=self.tag),
            expected)
        if view is None:
            return multiple()
        assert (view.account_id, view.amount, view.status) == (account, amount,
                                                                HoldStatus.PENDING)
        acct.held += amount
        self.hold_models[view.id] = HoldModel(account, amount, expires)
        return view.id

    def hold_error(self, hold: HoldModel) -> type[LmsError] | None:
        if hold.status is not HoldStatus.PENDING:
            return HoldNotPending
        if hold.expires_at <= self.now():
            return HoldExpired
        return None

    @rule(target=entries, hold_id=holds,
          amount=st.none() | st.integers(1, 50) | st.integers(1, 5000))
    def capture(self, hold_id: int, amount: int | None) -> Any:
        hold = self.hold_models[hold_id]
        take = hold.amount if amount is None else amount
        expected = self.hold_error(hold)
        if expected is None and take > hold.amount:
            expected = CaptureExceedsHold
        outcome = "full" if take == hold.amount else "partial"
        event(f"capture: {expected.__name__ if expected else outcome}")
        before = self.run(self.fingerprint()) if expected else None
        try:
            result = self.ledger(lambda ledger: ledger.capture(hold_id, amount,
                                                               actor=TEST_ACTOR))
        except LmsError as exc:
            assert expected is not None and type(exc) is expected, (expected, exc)
            assert self.run(self.fingerprint()) == before
            return multiple()
        assert expected is None, f"expected {expected.__name__}, got {result!r}"
        view, entry = result
        self.model[hold.account_id].held -= hold.amount
        hold.status, hold.captured = HoldStatus.CAPTURED, take
        assert (view.status, view.captured, view.entry_id) == (HoldStatus.CAPTURED, take,
                                                               entry.id)
        return self.record(entry, [(hold.account_id, Unit.MILES, -take),
                                   ("redemptions", Unit.MILES, take)], EntryKind.CAPTURE)

    @rule(hold_id=holds)
    def void(self, hold_id: int) -> None:
        hold = self.hold_models[hold_id]
        view = self.attempt(lambda ledger: ledger.void(hold_id, actor=TEST_ACTOR),
                            self.hold_error(hold))
        if view is not None:
            assert view.status is HoldStatus.VOIDED
            hold.status = HoldStatus.VOIDED
            self.model[hold.account_id].held -= hold.amount

    @rule(hold_id=holds)
    def read_hold(self, hold_id: int) -> None:
        """Reading a pending hold past its expiry expires it."""
        hold = self.hold_models[hold_id]
        view: HoldView = self.ledger(lambda ledger: ledger.get_hold(hold_id))
        if hold.status is HoldStatus.PENDING and hold.expires_at <= self.now():
            hold.status = HoldStatus.EXPIRED
            self.model[hold.account_id].held -= hold.amount
        assert (view.status, view.captured, view.amount) == (hold.status, hold.captured,
                                                             hold.amount)

    @rule(hours=st.sampled_from(HOLD_CLOCK_HOURS))
    def expire_holds(self, hours: int) -> None:
        clock = self.t0 + timedelta(hours=hours)
        due = [h for h in self.hold_models.values()
               if h.status is HoldStatus.PENDING and h.expires_at <= clock]
        count = self.ledger(lambda ledger: ledger.expire_holds(now=clock))
        assert count == len(due)
        for h in due:
            h.status = HoldStatus.EXPIRED
            self.model[h.account_id].held -= h.amount

    # -- lot expiry ------------------------------------------------------------------------------

    @rule(target=entries, account=accounts, days=st.sampled_from(LOT_CLOCK_DAYS))
    def expire_lots(self, account: int, days: int) -> Any:
        clock = self.t0 + timedelta(days=days)
        acct = self.model[account]
        due_lots = sum(lot.remaining for lot in acct.lots if lot.expires_at <= clock)
        due = min(due_lots, acct.available)
        if 0 < acct.available < due_lots:
            event("lot expiry spares held miles")
        entry = self.ledger(lambda ledger: ledger.expire_lots(account, now=clock))
        if due <= 0:
            assert entry is None
            return multiple()
        assert entry is not None
        return self.record(entry, [(account, Unit.MILES, -due),
                                   ("breakage", Unit.MILES, due)], EntryKind.EXPIRY)

    # -- after every step --------------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        if not self.model:
            return
        ids = sorted(self.model)

        async def read(conn: Any) -> tuple[list[Any], list[Any], list[Any]]:
            balances = await conn.fetch(
                "SELECT account_id, unit, posted, held FROM balances "
                "WHERE account_id = ANY($1::bigint[])", ids)
            lots = await conn.fetch(
                "SELECT account_id, expires_at, amount, remaining FROM lots "
                "WHERE account_id = ANY($1::bigint[]) ORDER BY id", ids)
            holds = await conn.fetch(
                "SELECT id, account_id, amount, captured, status, expires_at FROM holds "
                "WHERE account_id = ANY($1::bigint[])", ids)
            return balances, lots, holds

        balances, lots, holds = self.run(self.read(read))
        assert {(r["account_id"], Unit(r["unit"])): (r["posted"], r["held"])
                for r in balances} == {
            (a, u): (m.posted[u], m.held if u is Unit.MILES else 0)
            for a, m in self.model.items() for u in Unit}
        for account_id, acct in self.model.items():
            assert acct.available >= 0
            assert [(r["expires_at"], r["amount"], r["remaining"]) for r in lots
                    if r["account_id"] == account_id] == [
                (lot.expires_at, lot.amount, lot.remaining) for lot in acct.lots]
        assert {r["id"]: (r["account_id"], r["amount"], r["captured"], HoldStatus(r["status"]),
                          r["expires_at"]) for r in holds} == {
            i: (h.account_id, h.amount, h.captured, h.status, h.expires_at)
            for i, h in self.hold_models.items()}
        assert self.run(self.read_system_totals()) == self.system_totals
        assert [str(v) for v in self.run(self.harness.violations())] == []

    def teardown(self) -> None:
        # Leave no pending hold behind: the next example counts what the expiry job expires.
        self.ledger(lambda ledger: ledger.expire_holds(now=FAR_FUTURE, limit=100_000))


@pytest.fixture(scope="module")
def machine_url() -> Iterator[str]:
    url = migrated_database(f"lms_test_{os.getpid()}_machine")
    yield url
    drop_database(url)


def test_ledger_state_machine(machine_url: str) -> None:
    loop = asyncio.new_event_loop()
    harness = loop.run_until_complete(LedgerHarness(machine_url).start())
    LedgerMachine.loop = loop
    LedgerMachine.harness = harness
    try:
        run_state_machine_as_test(LedgerMachine, settings=settings(
            max_examples=60, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        loop.run_until_complete(harness.close())
        loop.close()
