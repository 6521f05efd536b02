"""Promotions: budgets never exceeded under concurrency, member caps, registration, first
flight."""

from __future__ import annotations

import asyncio
from datetime import date

from sqlalchemy import text

from lms.accrual.schemas import PromotionIn
from lms.accrual.service import FlightCredits, Outcome, ProgrammeRules, credit_coupons
from lms.db import Database, RawConnection
from lms.ledger.service import SystemAccounts
from lms.ledger.types import Unit
from tests.accrual.support import (
    add_promotion,
    balances,
    coupon,
    distance_carrier,
    make_member,
)

LHR_JFK = 3442


def promo_code(carrier: str, name: str) -> str:
    return f"{name}-{carrier}"


async def used(db: Database, code: str) -> int:
    async with db.engine.connect() as conn:
        value: int = (await conn.execute(text("SELECT used FROM promotions WHERE code = :c"),
                                         {"c": code})).scalar_one()
        return value


async def test_budget_is_never_exceeded_under_40_concurrent_credits(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "BUDGET")
    await add_promotion(db, PromotionIn(code=code, name="Budgeted", fixed_miles=1000,
                                        carriers=[carrier], budget=10_500))
    members = [await make_member(db, system) for _ in range(40)]

    results = await asyncio.gather(*(
        credit_coupons(db, system, [coupon(m, carrier)]) for m in members))

    awarded = [r[0].promotions.get(code, 0) for r in results]
    assert all(r[0].status == "credited" for r in results)
    assert sum(awarded) == 10_500 == await used(db, code)
    assert sorted(awarded, reverse=True)[:11] == [1000] * 10 + [500]
    for member, result in zip(members, results, strict=True):
        miles = (await balances(db, system, member.account_id))[Unit.MILES]
        assert miles == LHR_JFK + result[0].promotions.get(code, 0)


async def test_member_cap_gives_a_partial_award_then_nothing(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "CAP")
    await add_promotion(db, PromotionIn(code=code, name="Capped", fixed_miles=1000,
                                        carriers=[carrier], member_cap=1500))
    member = await make_member(db, system)
    first = await credit_coupons(db, system, [coupon(member, carrier, coupon_number=1),
                                              coupon(member, carrier, coupon_number=2)])
    later = await credit_coupons(db, system, [coupon(member, carrier)])
    assert [o.promotions.get(code, 0) for o in [*first, *later]] == [1000, 500, 0]
    assert (await balances(db, system, member.account_id))[Unit.MILES] == 3 * LHR_JFK + 1500


async def test_registration_is_needed_when_the_promotion_asks_for_it(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "REG")
    await add_promotion(db, PromotionIn(
        code=code, name="Register first", bonus_percent=100, carriers=[carrier],
        origins=["LHR"], travel_from=date(2026, 1, 1), travel_to=date(2027, 12, 31),
        requires_registration=True))
    member = await make_member(db, system)
    [before] = await credit_coupons(db, system, [coupon(member, carrier)])
    assert before.promotions == {}

    async def register() -> tuple[object, bool]:
        return await db.raw_transaction(
            lambda conn: ProgrammeRules(conn).register(code, member.id,
                                                       today=date(2026, 6, 1)))

    (_, created), (_, again) = await register(), await register()
    assert (created, again) == (True, False)
    [after] = await credit_coupons(db, system, [coupon(member, carrier)])
    assert after.promotions == {code: LHR_JFK}
    [elsewhere] = await credit_coupons(db, system, [coupon(member, carrier, origin="CDG")])
    assert elsewhere.promotions == {}


async def test_first_flight_bonus_once_per_member(db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "FIRST")
    await add_promotion(db, PromotionIn(code=code, name="Welcome", fixed_miles=1000,
                                        carriers=[carrier], first_flight_only=True))
    member = await make_member(db, system)
    batch = [coupon(member, carrier, flight_date=date(2026, 5, 2)),
             coupon(member, carrier, flight_date=date(2026, 5, 1))]
    outcomes = await credit_coupons(db, system, batch)
    # The earlier flight of the batch is the first one, whatever the order in the feed.
    assert [o.promotions.get(code, 0) for o in outcomes] == [0, 1000]
    [later] = await credit_coupons(db, system, [coupon(member, carrier)])
    assert later.promotions == {}


async def waiting_on_locks(db: Database, n: int) -> None:
    """Until ``n`` of this database's sessions wait for a row lock (or fail the test)."""
    for _ in range(400):
        async with db.engine.connect() as conn:
            waiting = (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))).scalar_one()
        if waiting >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} sessions never waited for a lock")


async def test_batches_that_read_the_same_budget_settle_it_one_after_the_other(
        db: Database, system: SystemAccounts) -> None:
    """Two batches decide their bonus from the same unlocked read of the budget, with room
    for one whole bonus only: the second to settle finds the budget spent under the lock,
    rolls back and is decided again under the lock, as if it had waited from the start."""
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "RACE")
    await add_promotion(db, PromotionIn(code=code, name="Raced", fixed_miles=1000,
                                        carriers=[carrier], budget=1500))
    a, b = await make_member(db, system), await make_member(db, system)
    async with db.engine.connect() as holder:
        # Both batches post their credits, then queue to settle behind this lock.
        await holder.execute(text("SELECT 1 FROM promotions WHERE code = :c FOR UPDATE"),
                             {"c": code})
        batches = [asyncio.create_task(credit_coupons(db, system, [coupon(m, carrier)]))
                   for m in (a, b)]
        await waiting_on_locks(db, 2)
        await holder.rollback()
    results = await asyncio.gather(*batches)
    awarded = sorted(r[0].promotions.get(code, 0) for r in results)
    assert awarded == [500, 1000] and await used(db, code) == 1500
    for member, [outcome] in zip((a, b), results, strict=True):
        assert (await balances(db, system, member.account_id))[Unit.MILES] == (
            LHR_JFK + outcome.promotions.get(code, 0))


async def test_a_spent_budget_is_not_locked_again(db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "SPENT")
    await add_promotion(db, PromotionIn(code=code, name="Spent", fixed_miles=1000,
                                        carriers=[carrier], budget=1000))
    member = await make_member(db, system)
    [first] = await credit_coupons(db, system, [coupon(member, carrier)])
    assert first.promotions == {code: 1000}
    async with db.engine.connect() as holder:
        await holder.execute(text("SELECT 1 FROM promotions WHERE code = :c FOR UPDATE"),
                             {"c": code})
        # Would wait for the lock above if the spent promotion were still considered.
        [later] = await asyncio.wait_for(
            credit_coupons(db, system, [coupon(member, carrier)]), timeout=10)
        await holder.rollback()
    assert later.status == "credited" and later.promotions == {}
    assert await used(db, code) == 1000


async def test_a_batch_that_locks_a_budget_locks_its_balance_rows_first(
        db: Database, system: SystemAccounts) -> None:
    """Balance rows come before promotions in every batch's lock order: a batch deciding a
    budget under its lock (the locked way, a rerun's) takes its balance rows first, which
    its posting would otherwise lock only after the promotion. Waiting for a member's
    balance row, it holds no promotion row, so an optimistic batch that settles the same
    budget after its posting cannot be waiting for it in a cycle."""
    carrier = await distance_carrier(db)
    code = promo_code(carrier, "ORDER")
    await add_promotion(db, PromotionIn(code=code, name="Ordered", fixed_miles=1000,
                                        carriers=[carrier], budget=5000))
    member = await make_member(db, system)

    async def locked_batch(conn: RawConnection) -> list[Outcome]:
        return await FlightCredits(conn, system, optimistic_budgets=False).credit(
            [coupon(member, carrier)])

    async with db.engine.connect() as holder:
        await holder.execute(text("SELECT 1 FROM balances WHERE account_id = :a FOR UPDATE"),
                             {"a": member.account_id})
        batch = asyncio.create_task(db.raw_transaction(locked_batch))
        await waiting_on_locks(db, 1)
        async with db.engine.connect() as other:
            # Would fail (lock not available) if the batch held the promotion's row.
            await other.execute(text(
                "SELECT 1 FROM promotions WHERE code = :c FOR UPDATE NOWAIT"), {"c": code})
            await other.rollback()
        await holder.rollback()
    [outcome] = await asyncio.wait_for(batch, timeout=10)
    assert outcome.status == "credited" and outcome.promotions == {code: 1000}
    assert await used(db, code) == 1000
