"""Miles in family pools: flight and partner accruals of members land in the pool as their
contributions, concurrently with the pool's spending; leaving takes a share; dissolving
distributes exactly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.service import credit_coupons
from lms.db import Database
from lms.family.shares import leaver_share, proportional
from lms.ledger.errors import InsufficientMiles
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind, Unit
from lms.settings import Settings
from tests.accrual.support import Flyer, coupon, distance_carrier
from tests.family.support import TEST_ACTOR, M, make_member, miles, problem
from tests.family.test_lifecycle import create_pool, join
from tests.partners.support import accrual_body, accrue, admin_headers, issue_key, make_partner

LHR_JFK = 3442  # miles of a Y coupon on a test carrier (100 %)


def flyer(m: M) -> Flyer:
    return Flyer(m.id, m.account_id, m.card, "BASIC")


async def family(client: httpx.AsyncClient, m: M) -> dict[str, Any]:
    pool: dict[str, Any] = (await client.get("/v1/me/family", headers=m.headers)).json()["pool"]
    return pool


async def pool_of(client: httpx.AsyncClient, db: Database, system: SystemAccounts,
                  settings: Settings, size: int) -> tuple[list[M], int]:
    members = [await make_member(db, system, settings, first_name=f"P{i}")
               for i in range(size)]
    pool = await create_pool(client, members[0])
    for m in members[1:]:
        await join(client, members[0], m)
    account = pool["accountId"]
    assert isinstance(account, int)
    return members, account


async def spend(db: Database, system: SystemAccounts, account_id: int, amount: int) -> int:
    """The pool's spending as a redemption would take it (a debit of the pool account)."""
    async def work(session: AsyncSession) -> int:
        entry = await Ledger(session, system).debit(account_id, amount,
                                                    kind=EntryKind.REDEMPTION,
                                                    actor=TEST_ACTOR)
        return entry.id

    return await db.transaction(work)


async def test_flight_and_partner_miles_of_members_go_to_the_pool_status_stays_personal(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    (head, ben), pool_account = await pool_of(client, db, system, settings, 2)
    outsider = await make_member(db, system, settings)
    carrier = await distance_carrier(db)
    outcomes = await credit_coupons(db, system, [
        coupon(flyer(ben), carrier), coupon(flyer(head), carrier, booking_class="J"),
        coupon(flyer(outsider), carrier)])
    assert [o.status for o in outcomes] == ["credited"] * 3

    admin = await admin_headers(db, settings)
    shop = await make_partner(client, admin)
    key = await issue_key(client, admin, shop["code"])
    accrued = await accrue(client, key, accrual_body(ben.card))
    assert accrued.status_code == 201, accrued.text
    assert accrued.json()["miles"] == 150
    assert accrued.json()["balanceAfter"] is None  # the pool's balance is not the shop's

    assert await miles(db, system, pool_account) == LHR_JFK + 2 * LHR_JFK + 150
    for m in (head, ben):
        assert await miles(db, system, m.account_id) == 0
    assert await miles(db, system, ben.account_id, Unit.STATUS_MILES) == LHR_JFK
    assert await miles(db, system, head.account_id, Unit.STATUS_MILES) == 2 * LHR_JFK
    assert await miles(db, system, outsider.account_id) == LHR_JFK

    pool = await family(client, ben)
    contributions = {m["memberId"]: m["contributed"] for m in pool["members"]}
    assert contributions == {head.id: 2 * LHR_JFK, ben.id: LHR_JFK + 150}
    assert pool["contributionsTotal"] == pool["balance"]["posted"] == sum(
        contributions.values())

    # After leaving, the member's miles are theirs again.
    left = await client.post("/v1/me/family/leave", headers=ben.key())
    assert left.status_code == 200, left.text
    before = await miles(db, system, ben.account_id)
    await credit_coupons(db, system, [coupon(flyer(ben), carrier)])
    assert await miles(db, system, ben.account_id) == before + LHR_JFK


async def test_pool_accruals_concurrent_with_pool_debits(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    members, pool_account = await pool_of(client, db, system, settings, 4)
    carrier = await distance_carrier(db)
    # A starting balance to spend from.
    await credit_coupons(db, system, [coupon(flyer(m), carrier) for m in members])
    start = 4 * LHR_JFK
    assert await miles(db, system, pool_account) == start

    async def debit(amount: int) -> int:
        try:
            await spend(db, system, pool_account, amount)
            return amount
        except InsufficientMiles:
            return 0

    async def fly(m: M) -> int:
        return sum(o.miles for o in await credit_coupons(db, system,
                                                         [coupon(flyer(m), carrier)]))

    flights = [fly(m) for m in members for _ in range(5)]
    debits = [debit(1500) for _ in range(20)]
    results = await asyncio.gather(*flights, *debits)
    credited, spent = sum(results[:len(flights)]), sum(results[len(flights):])
    assert credited == 20 * LHR_JFK
    assert spent > 0
    assert await miles(db, system, pool_account) == start + credited - spent
    pool = await family(client, members[0])
    assert pool["contributionsTotal"] == start + credited
    assert all(m["contributed"] == 6 * LHR_JFK for m in pool["members"])


async def test_leaving_takes_the_contribution_share_of_what_is_left(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    (head, ben, cleo), pool_account = await pool_of(client, db, system, settings, 3)
    carrier = await distance_carrier(db)
    await credit_coupons(db, system, [
        coupon(flyer(head), carrier, booking_class="J"), coupon(flyer(ben), carrier),
        coupon(flyer(cleo), carrier)])
    total = 4 * LHR_JFK
    await spend(db, system, pool_account, 1001)
    left = await client.post("/v1/me/family/leave", headers=ben.key())
    share = leaver_share(total - 1001, LHR_JFK, total)
    assert left.json()["milesTaken"] == share == (total - 1001) * LHR_JFK // total
    assert await miles(db, system, ben.account_id) == share
    assert await miles(db, system, pool_account) == total - 1001 - share
    removed = await client.post(f"/v1/me/family/members/{cleo.id}/remove",
                                headers=head.key())
    cleo_share = leaver_share(total - 1001 - share, LHR_JFK, 3 * LHR_JFK)
    assert removed.json()["milesTaken"] == cleo_share
    assert await miles(db, system, cleo.account_id) == cleo_share


def test_proportional_split_sums_exactly_and_gives_ties_to_the_first() -> None:
    assert proportional(1000, [1, 1, 1]) == [334, 333, 333]
    assert proportional(10, [0, 0]) == [5, 5]
    assert proportional(7, [3, 0, 4]) == [3, 0, 4]
    assert proportional(100, [1, 2]) == [33, 67]
    for total in (0, 1, 99, 12_345):
        for weights in ([1], [5, 5, 5, 5, 5, 5, 5], [1, 10**9, 3], [0, 7, 0]):
            shares = proportional(total, weights)
            assert sum(shares) == total
            assert all(abs(s - total * w / sum(weights)) < 1 for s, w in zip(
                shares, weights, strict=True))


async def test_dissolving_distributes_the_balance_exactly_and_closes_the_pool(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    (head, ben, cleo), pool_account = await pool_of(client, db, system, settings, 3)
    carrier = await distance_carrier(db)
    await credit_coupons(db, system, [coupon(flyer(m), carrier) for m in (head, ben, cleo)])
    await spend(db, system, pool_account, 3 * LHR_JFK - 1000)

    # Not while miles are held.
    async def hold(session: AsyncSession) -> int:
        view = await Ledger(session, system).create_hold(
            pool_account, 10, actor=TEST_ACTOR,
            expires_at=datetime.now(UTC) + timedelta(minutes=5))
        return view.id

    hold_id = await db.transaction(hold)
    problem(await client.post("/v1/me/family/dissolve", headers=ben.key()), 403,
            "not_pool_head")
    problem(await client.post("/v1/me/family/dissolve", headers=head.key()), 409,
            "pool_has_holds")
    await db.transaction(lambda s: Ledger(s, system).void(hold_id, actor=TEST_ACTOR))

    dissolved = await client.post("/v1/me/family/dissolve", headers=head.key())
    assert dissolved.status_code == 200, dissolved.text
    result = dissolved.json()
    assert result["distributed"] == 1000
    assert {p["memberId"]: p["miles"] for p in result["payouts"]} == {
        head.id: 334, ben.id: 333, cleo.id: 333}
    assert [await miles(db, system, m.account_id) for m in (head, ben, cleo)] == [334, 333,
                                                                                  333]
    assert await miles(db, system, pool_account) == 0

    async def facts(session: AsyncSession) -> tuple[Any, ...]:
        status = (await session.execute(text("SELECT status FROM accounts WHERE id = :a"),
                                        {"a": pool_account})).scalar()
        legs = (await session.execute(text(
            "SELECT count(*) FROM postings WHERE entry_id = :e"),
            {"e": result["entryId"]})).scalar()
        return status, legs

    assert await db.transaction(facts) == ("closed", 4)
    for m in (head, ben, cleo):
        assert (await client.get("/v1/me/family", headers=m.headers)).json()["pool"] is None
    # The members' miles are theirs again; the head waits out the cooling-off like everyone.
    await credit_coupons(db, system, [coupon(flyer(ben), carrier)])
    assert await miles(db, system, ben.account_id) == 333 + LHR_JFK
    problem(await client.post("/v1/me/family", headers=head.key()), 409, "family_cooling_off")


async def test_credits_racing_a_departure_land_either_in_the_pool_or_personally(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    (_, ben), pool_account = await pool_of(client, db, system, settings, 2)
    carrier = await distance_carrier(db)
    await credit_coupons(db, system, [coupon(flyer(ben), carrier, booking_class="J")])

    async def fly() -> int:
        return sum(o.miles for o in await credit_coupons(db, system,
                                                         [coupon(flyer(ben), carrier)]))

    flights = [fly() for _ in range(12)]
    results = await asyncio.gather(*flights[:6], client.post(
        "/v1/me/family/leave", headers=ben.key()), *flights[6:])
    leave = results[6]
    assert isinstance(leave, httpx.Response) and leave.status_code == 200, leave
    taken = leave.json()["milesTaken"]

    async def contributed(session: AsyncSession) -> int:
        value: int = (await session.execute(text(
            "SELECT contributed FROM family_members WHERE member_id = :m"),
            {"m": ben.id})).scalar_one()
        return value

    contribution = await db.transaction(contributed)
    pooled = await miles(db, system, pool_account)
    personal = await miles(db, system, ben.account_id)
    # Every credit went one way or the other, and the contribution is exactly what the
    # pool got from Ben.
    assert pooled + personal == 2 * LHR_JFK + 12 * LHR_JFK
    assert personal == taken + (2 * LHR_JFK + 12 * LHR_JFK - contribution)
    assert pooled == contribution - taken


async def test_a_member_accepting_two_pools_at_once_joins_one(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    heads = [await make_member(db, system, settings) for _ in range(4)]
    ben = await make_member(db, system, settings)
    invitations = []
    for head in heads:
        await create_pool(client, head)
        sent = await client.post("/v1/me/family/invitations", headers=head.key(),
                                 json={"cardNumber": ben.card})
        invitations.append(sent.json()["id"])
    answers = await asyncio.gather(*(client.post(
        f"/v1/me/family/invitations/{i}/accept", headers=ben.key()) for i in invitations))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"already_in_pool"}
