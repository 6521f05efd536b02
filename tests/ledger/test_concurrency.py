"""Many units of work at once on a few hot accounts, each through ``Database.transaction`` like
production. Every race starts with all its transactions open at the same moment (a start line
inside the transaction), so 32-64 connections really contend for the same rows.

Besides the exact outcome of each race, the runner counts how many times a unit of work ran:
the ledger locks rows in a fixed order, so no race should ever need the deadlock retry. The
autouse fixture then checks the whole ledger with ``verify``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database, raw_connection
from lms.ledger.errors import (
    AlreadyReversed,
    DuplicateExternalReference,
    HoldNotPending,
    InsufficientMiles,
)
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, EntryKind, HoldStatus, HoldView, SystemAccount, Unit
from tests.factories import TEST_ACTOR, funded_account

Op = Callable[[Ledger], Awaitable[Any]]


class Race:
    """Runs operations concurrently, each as one unit of work with all starting together."""

    def __init__(self, db: Database, system: SystemAccounts) -> None:
        self.db = db
        self.system = system
        self.attempts = 0
        self.peak = 0

    async def run(self, ops: Sequence[Op]) -> list[Any]:
        """The result or the exception of each operation, in order."""
        ready = 0
        go = asyncio.Event()
        self.attempts = 0

        async def one(op: Op) -> Any:
            async def work(session: AsyncSession) -> Any:
                nonlocal ready
                self.attempts += 1
                conn = await raw_connection(session)  # a connection, inside its transaction
                if not go.is_set():
                    ready += 1
                    if ready == len(ops):
                        self.peak = await conn.fetchval(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND state LIKE 'idle in%'")
                        go.set()
                    await asyncio.wait_for(go.wait(), timeout=30)
                return await op(Ledger(session, self.system))

            return await self.db.transaction(work)

        results = await asyncio.gather(*(one(op) for op in ops), return_exceptions=True)
        return list(results)

    @property
    def retries(self) -> int:
        return self.attempts - self._n

    async def __call__(self, ops: Sequence[Op]) -> list[Any]:
        # Every task holds its connection at the start line, so a race must fit in the pool
        # (the db fixture allows 60; leave some for the fixtures' own reads).
        assert 32 <= len(ops) <= MAX_TASKS
        self._n = len(ops)
        results = await self.run(ops)
        unexpected = [r for r in results if isinstance(r, BaseException)
                      and not isinstance(r, EXPECTED)]
        assert not unexpected, unexpected
        assert self.retries == 0, f"{self.retries} units of work had to be rerun (deadlock?)"
        assert self.peak >= min(len(ops), 32) - 1, f"only {self.peak} transactions overlapped"
        return results


MAX_TASKS = 56
EXPECTED = (InsufficientMiles, HoldNotPending, DuplicateExternalReference, AlreadyReversed)


@pytest.fixture
def race(db: Database, system: SystemAccounts) -> Race:
    return Race(db, system)


async def miles(in_ledger: Any, account_id: int) -> tuple[int, int]:
    """(posted, held) MILES of an account."""

    async def read(ledger: Ledger) -> tuple[int, int]:
        b = {x.unit: x for x in await ledger.balances(account_id)}[Unit.MILES]
        return b.posted, b.held

    result: tuple[int, int] = await in_ledger(read)
    return result


async def open_lots_total(in_ledger: Any, account_id: int) -> int:
    async def read(ledger: Ledger) -> int:
        return sum(r["remaining"] for r in await ledger.open_lots(account_id, 10_000))

    result: int = await in_ledger(read)
    return result


def ok(results: Sequence[Any]) -> list[Any]:
    return [r for r in results if not isinstance(r, BaseException)]


def failed(results: Sequence[Any], kind: type[BaseException]) -> int:
    return sum(isinstance(r, kind) for r in results)


def later(**kwargs: float) -> datetime:
    return datetime.now(UTC) + timedelta(**kwargs)


def transfer(src: int, dst: int, amount: int) -> Op:
    return lambda ledger: ledger.transfer(src, dst, amount, actor=TEST_ACTOR)


def debit(account_id: int, amount: int) -> Op:
    return lambda ledger: ledger.debit(account_id, amount, kind=EntryKind.REDEMPTION,
                                       actor=TEST_ACTOR)


def capture(hold_id: int, amount: int | None) -> Op:
    return lambda ledger: ledger.capture(hold_id, amount, actor=TEST_ACTOR)


def void(hold_id: int) -> Op:
    return lambda ledger: ledger.void(hold_id, actor=TEST_ACTOR)


def expire_lots(account_id: int) -> Op:
    return lambda ledger: ledger.expire_lots(account_id)


def credit(account_id: int, amount: int, **kwargs: Any) -> Op:
    return lambda ledger: ledger.credit(account_id, amount, kind=EntryKind.ACCRUAL,
                                        actor=TEST_ACTOR, **kwargs)


# -- transfers ---------------------------------------------------------------------------------

async def test_transfers_both_ways_between_two_accounts(in_ledger: Any, race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 5_000))
    b = await in_ledger(lambda ledger: funded_account(ledger, 5_000))
    rng = random.Random(1)
    plan = [(a, b, rng.randint(1, 400)) if i % 2 else (b, a, rng.randint(1, 400))
            for i in range(MAX_TASKS)]
    results = await race([transfer(*p) for p in plan])
    assert len(ok(results)) == MAX_TASKS  # both had enough for any order
    net = sum(amt if src == b else -amt for src, _, amt in plan)
    assert await miles(in_ledger, a) == (5_000 + net, 0)
    assert await miles(in_ledger, b) == (5_000 - net, 0)
    assert await open_lots_total(in_ledger, a) == 5_000 + net


async def test_scarce_transfers_never_overdraw(in_ledger: Any, race: Race) -> None:
    """Both ways at once with little money: some fail, none overdraw, the sum is conserved and
    each final balance is exactly the start plus the transfers that succeeded."""
    a = await in_ledger(lambda ledger: funded_account(ledger, 100))
    b = await in_ledger(lambda ledger: funded_account(ledger, 100))
    plan = [(a, b, 30) if i % 2 else (b, a, 30) for i in range(MAX_TASKS)]
    results = await race([transfer(*p) for p in plan])
    assert failed(results, InsufficientMiles) + len(ok(results)) == MAX_TASKS
    net = sum(30 if src == b else -30 for (src, _, _), r in zip(plan, results, strict=True)
              if not isinstance(r, BaseException))
    pa, pb = (await miles(in_ledger, a))[0], (await miles(in_ledger, b))[0]
    assert (pa, pb) == (100 + net, 100 - net)
    assert pa >= 0 and pb >= 0 and pa + pb == 200
    # A failure means the payer could not afford 30 when it ran; the posted balances after
    # each success are recorded on the postings and never go below zero.
    for r in ok(results):
        assert all(v >= 0 for v in r.balances.values())


async def test_transfers_in_a_ring(in_ledger: Any, race: Race) -> None:
    """A→B→C→D→A and back, all at once: the lock order holds across more than two rows."""
    accounts = [await in_ledger(lambda ledger: funded_account(ledger, 1_000))
                for _ in range(4)]
    pairs = [(accounts[i % 4], accounts[(i + 1) % 4]) if i % 3 else
             (accounts[(i + 1) % 4], accounts[i % 4]) for i in range(MAX_TASKS)]
    results = await race([transfer(s, d, 7) for s, d in pairs])
    assert len(ok(results)) == MAX_TASKS
    flow: Counter[int] = Counter()
    for src, dst in pairs:
        flow[src] -= 7
        flow[dst] += 7
    for account in accounts:
        assert await miles(in_ledger, account) == (1_000 + flow[account], 0)


# -- debits and holds beyond what is there ---------------------------------------------------

async def test_debits_that_together_exceed_the_balance(in_ledger: Any, race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 1_000))
    results = await race([debit(a, 30) for _ in range(50)])
    assert len(ok(results)) == 33  # exactly the affordable ones: 33 * 30 = 990
    assert failed(results, InsufficientMiles) == 17
    assert await miles(in_ledger, a) == (10, 0)
    assert await open_lots_total(in_ledger, a) == 10


async def test_debits_of_various_sizes(in_ledger: Any, race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 2_000))
    rng = random.Random(7)
    amounts = [rng.randint(1, 150) for _ in range(48)]
    results = await race([debit(a, n) for n in amounts])
    spent = sum(n for n, r in zip(amounts, results, strict=True)
                if not isinstance(r, BaseException))
    posted = 2_000 - spent
    assert posted >= 0 and spent > 0
    assert await miles(in_ledger, a) == (posted, 0)
    # Balances only go down, so each refused debit was more than what is left now.
    for n, r in zip(amounts, results, strict=True):
        if isinstance(r, InsufficientMiles):
            assert n > posted
    assert failed(results, InsufficientMiles) == 48 - len(ok(results)) > 0


async def test_holds_and_debits_that_together_exceed_available(in_ledger: Any,
                                                                race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 1_000))

    def hold(ledger: Ledger) -> Awaitable[HoldView]:
        return ledger.create_hold(a, 30, actor=TEST_ACTOR, expires_at=later(hours=1))

    results = await race([hold if i % 2 else debit(a, 30) for i in range(56)])
    assert len(ok(results)) == 33
    assert failed(results, InsufficientMiles) == 23
    holds = [r for r in ok(results) if isinstance(r, HoldView)]
    debits = len(ok(results)) - len(holds)
    assert await miles(in_ledger, a) == (1_000 - 30 * debits, 30 * len(holds))


async def test_holds_alone_exceeding_available(in_ledger: Any, race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 500))
    results = await race([
        lambda ledger: ledger.create_hold(a, 20, actor=TEST_ACTOR, expires_at=later(hours=1))
        for _ in range(40)])
    assert len(ok(results)) == 25
    assert failed(results, InsufficientMiles) == 15
    assert await miles(in_ledger, a) == (500, 500)


# -- one hold, many hands ----------------------------------------------------------------------

async def test_capture_void_and_expire_of_the_same_hold(in_ledger: Any, race: Race) -> None:
    """Eight holds, each raced by full and partial captures, voids and the expiry job (with a
    clock past the hold's expiry): exactly one wins per hold."""
    a = await in_ledger(lambda ledger: funded_account(ledger, 10_000))
    expires = later(hours=2)

    async def make_holds(ledger: Ledger) -> list[HoldView]:
        return [await ledger.create_hold(a, 100 + i, actor=TEST_ACTOR, expires_at=expires)
                for i in range(8)]

    holds = await in_ledger(make_holds)
    ops: list[tuple[int | None, str, Op]] = []
    for hold in holds:
        h = hold.id
        ops += [
            (h, "capture", capture(h, None)),
            (h, "capture", capture(h, 40)),
            (h, "capture", capture(h, 1)),
            (h, "void", void(h)),
            (h, "void", void(h)),
        ]
    # The expiry job claims due holds with SKIP LOCKED: it may take some of ours or none.
    ops += [(None, "expire", lambda ledger: ledger.expire_holds(
        now=expires + timedelta(seconds=1))) for _ in range(8)]
    rng = random.Random(3)
    rng.shuffle(ops)
    results = await race([op for _, _, op in ops])

    async def final(ledger: Ledger) -> dict[int, HoldView]:
        return {h.id: await ledger.get_hold(h.id) for h in holds}

    after = await in_ledger(final)
    captured_total = 0
    for hold in holds:
        wins = [(what, r) for (h, what, _), r in zip(ops, results, strict=True)
                if h == hold.id and not isinstance(r, BaseException)]
        losses = [r for (h, _, _), r in zip(ops, results, strict=True)
                  if h == hold.id and isinstance(r, BaseException)]
        assert all(isinstance(r, HoldNotPending) for r in losses), losses
        status = after[hold.id].status
        if status is HoldStatus.EXPIRED:
            assert wins == []
        else:
            assert len(wins) == 1, (hold.id, wins)
            what, result = wins[0]
            if what == "capture":
                view, entry = result
                assert status is HoldStatus.CAPTURED and view.captured == after[hold.id].captured
                assert after[hold.id].entry_id == entry.id
                captured_total += view.captured
            else:
                assert status is HoldStatus.VOIDED and result.status is HoldStatus.VOIDED
    expired_ours = sum(after[h.id].status is HoldStatus.EXPIRED for h in holds)
    assert sum(r for (_, what, _), r in zip(ops, results, strict=True)
               if what == "expire") >= expired_ours
    assert await miles(in_ledger, a) == (10_000 - captured_total, 0)


async def test_expiring_a_due_hold_on_read_releases_it_once(in_ledger: Any,
                                                            race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 1_000))
    hold = await in_ledger(lambda ledger: ledger.create_hold(
        a, 600, actor=TEST_ACTOR, expires_at=later(seconds=-1)))
    assert await miles(in_ledger, a) == (1_000, 600)
    results = await race([lambda ledger: ledger.get_hold(hold.id) for _ in range(40)])
    assert {r.status for r in results} == {HoldStatus.EXPIRED}
    assert await miles(in_ledger, a) == (1_000, 0)


# -- exactly once --------------------------------------------------------------------------------

async def test_same_external_reference_posted_concurrently(in_ledger: Any,
                                                           race: Race) -> None:
    accounts = [await in_ledger(lambda ledger: funded_account(ledger)) for _ in range(4)]
    ref = f"TKT-{random.getrandbits(48)}/C1"
    results = await race([credit(accounts[i % 4], 500, source="partner:ba", external_ref=ref)
                          for i in range(48)])
    assert len(ok(results)) == 1
    assert failed(results, DuplicateExternalReference) == 47
    totals = [(await miles(in_ledger, acc))[0] for acc in accounts]
    assert sorted(totals) == [0, 0, 0, 500]


async def test_same_entry_reversed_concurrently(in_ledger: Any, race: Race) -> None:
    a = await in_ledger(lambda ledger: funded_account(ledger, 1_000))
    b = await in_ledger(lambda ledger: funded_account(ledger, 0))
    entry = await in_ledger(lambda ledger: ledger.transfer(a, b, 400, actor=TEST_ACTOR))
    results = await race([
        lambda ledger: ledger.reverse(entry.id, actor=TEST_ACTOR, reason="duplicate")
        for _ in range(48)])
    assert len(ok(results)) == 1
    assert failed(results, AlreadyReversed) == 47
    assert await miles(in_ledger, a) == (1_000, 0)
    assert await miles(in_ledger, b) == (0, 0)


async def test_lot_expiry_run_concurrently_expires_once(in_ledger: Any, race: Race) -> None:
    past = later(days=-1)

    async def setup(ledger: Ledger) -> int:
        a = await ledger.open_account(AccountKind.MEMBER)
        await ledger.credit(a, 300, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            lot_expires_at=past)
        await ledger.credit(a, 200, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            lot_expires_at=later(days=400))
        return a

    a = await in_ledger(setup)
    results = await race([lambda ledger: ledger.expire_lots(a) for _ in range(40)]
                         + [debit(a, 10) for _ in range(8)])
    expiries = [r for r in results[:40] if r is not None]
    assert len(expiries) == 1
    assert len(ok(results[40:])) == 8
    # Debits consume the oldest (expired) lot first and the expiry takes what they left of
    # it, so right after the expiry exactly the unexpired lot is left, whatever the order.
    assert expiries[0].balances[(a, Unit.MILES)] == 200
    posted, held = await miles(in_ledger, a)
    assert held == 0 and 120 <= posted <= 200 and posted % 10 == 0

    async def lots(ledger: Ledger) -> list[Any]:
        return await ledger.open_lots(a, 100)

    remaining = await in_ledger(lots)
    assert [r["remaining"] for r in remaining] == [posted]
    assert all(r["expires_at"] > datetime.now(UTC) for r in remaining)


# -- lock order ------------------------------------------------------------------------------

async def test_lot_expiry_and_reinstatement_from_breakage(in_ledger: Any, race: Race) -> None:
    """The expiry job and agents reinstating expired miles (a credit from breakage) on the
    same accounts at once: both lock a breakage shard and the member's balance, and must do
    so in the same order (a deadlock costs a second of ``deadlock_timeout`` and a retry)."""
    past = later(days=-2)

    async def setup(ledger: Ledger) -> int:
        a = await ledger.open_account(AccountKind.MEMBER)
        for _ in range(4):
            await ledger.credit(a, 100, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                                lot_expires_at=past)
        return a

    accounts = [await in_ledger(setup) for _ in range(10)]
    ops: list[Op] = []
    for a in accounts:
        ops += [expire_lots(a) for _ in range(2)]
        ops += [credit(a, 5, from_system=SystemAccount.BREAKAGE, lot_expires_at=past)
                for _ in range(2)]
    random.Random(5).shuffle(ops)
    results = await race(ops)
    assert len(ok(results)) == len(ops)
    for a in accounts:
        posted, held = await miles(in_ledger, a)
        assert held == 0 and posted in (0, 5, 10)  # reinstated after the last expiry run


# -- everything at once ----------------------------------------------------------------------

async def test_mixed_storm_conserves_every_account(in_ledger: Any, race: Race) -> None:
    """Credits, debits, transfers and holds over four accounts at once, then captures and
    voids of those holds racing more of the same; the final balances equal the starting ones
    plus exactly the operations that succeeded."""
    accounts = [await in_ledger(lambda ledger: funded_account(ledger, 300)) for _ in range(4)]
    rng = random.Random(11)
    posted = dict.fromkeys(accounts, 300)
    held = dict.fromkeys(accounts, 0)

    def plan(kinds: list[str]) -> list[tuple[str, int, int, int]]:
        return [(rng.choice(kinds), *rng.sample(accounts, 2), rng.randint(1, 120))
                for _ in range(MAX_TASKS)]

    def account_for(results: list[Any], planned: list[tuple[str, int, int, int]]) -> None:
        for (kind, src, dst, amount), r in zip(planned, results, strict=True):
            if isinstance(r, BaseException):
                assert isinstance(r, InsufficientMiles)
            elif kind == "credit":
                posted[src] += amount
            elif kind == "debit":
                posted[src] -= amount
            elif kind == "transfer":
                posted[src] -= amount
                posted[dst] += amount
            elif kind == "hold":
                held[src] += amount

    def op(kind: str, src: int, dst: int, amount: int) -> Op:
        if kind == "credit":
            return credit(src, amount)
        if kind == "debit":
            return debit(src, amount)
        if kind == "transfer":
            return transfer(src, dst, amount)
        return lambda ledger: ledger.create_hold(src, amount, actor=TEST_ACTOR,
                                                 expires_at=later(hours=1))

    first = plan(["credit", "debit", "transfer", "transfer", "hold", "hold"])
    results = await race([op(*p) for p in first])
    account_for(results, first)
    holds = [r for r in results if isinstance(r, HoldView)]
    assert holds
    for account in accounts:
        assert await miles(in_ledger, account) == (posted[account], held[account])

    second = plan(["credit", "debit", "transfer"])[: MAX_TASKS - len(holds)]
    ops = [op(*p) for p in second]
    for i, hold in enumerate(holds):
        if i % 3 == 2:
            ops.append(void(hold.id))
        else:
            ops.append(capture(hold.id, max(1, hold.amount // (1 + i % 2))))  # all or half
    results = await race(ops)
    account_for(results[: len(second)], second)
    for hold, r in zip(holds, results[len(second):], strict=True):
        assert not isinstance(r, BaseException), r
        held[hold.account_id] -= hold.amount
        if isinstance(r, tuple):
            posted[hold.account_id] -= r[0].captured
    for account in accounts:
        assert held[account] == 0
        assert await miles(in_ledger, account) == (posted[account], 0)
        assert await open_lots_total(in_ledger, account) == posted[account]


# -- which error wins ----------------------------------------------------------------------------

async def test_same_external_reference_debited_concurrently(in_ledger: Any,
                                                            race: Race) -> None:
    """A partner retrying a redemption it already made: the retries are duplicates, even when
    the member could not afford the debit twice."""
    a = await in_ledger(lambda ledger: funded_account(ledger, 700))
    ref = f"RDM-{random.getrandbits(48)}"
    results = await race([debit_ref(a, 500, ref) for _ in range(40)])
    assert len(ok(results)) == 1
    assert failed(results, DuplicateExternalReference) == 39, results
    assert await miles(in_ledger, a) == (200, 0)


def debit_ref(account_id: int, amount: int, ref: str) -> Op:
    return lambda ledger: ledger.debit(account_id, amount, kind=EntryKind.REDEMPTION,
                                       actor=TEST_ACTOR, source="partner:hotel",
                                       external_ref=ref)
