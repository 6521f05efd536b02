"""Crediting flown coupons through the service: amounts, duplicates, rejections, rules."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date, timedelta

from sqlalchemy import text

from lms.accrual.earning import Reason
from lms.accrual.schemas import EarnRuleIn, PromotionIn
from lms.accrual.service import SOURCE, credit_coupons
from lms.claims.schemas import ClaimRequest
from lms.claims.service import ClaimService
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.ledger.types import Unit
from tests.accrual.support import (
    add_promotion,
    add_rules,
    balances,
    coupon,
    distance_carrier,
    make_member,
    tier_name,
)

LHR_JFK = 3442


async def test_business_flight_with_tier_bonus_is_credited_by_hand_figures(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    tier = tier_name()
    await add_rules(db, EarnRuleIn("tier_bonus", tier, date(2020, 1, 1), {"bonusPercent": 50}))
    member = await make_member(db, system, tier=tier)

    [outcome] = await credit_coupons(db, system, [coupon(member, carrier, booking_class="J")])

    # 3442 x 200 % = 6884 base + 50 % tier bonus 3442 = 10326; status 3442 x 200 % = 6884.
    assert (outcome.status, outcome.miles, outcome.status_miles, outcome.segments) == (
        "credited", 10326, 6884, 1)
    assert await balances(db, system, member.account_id) == {
        Unit.MILES: 10326, Unit.STATUS_MILES: 6884, Unit.SEGMENTS: 1}
    async with db.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT e.kind, e.source, e.external_ref, e.details->>'distance', "
            "m.last_activity_at FROM journal_entries e, members m "
            "WHERE e.id = :id AND m.id = :member"),
            {"id": outcome.entry_id, "member": member.id})).one()
    assert row[:4] == ("accrual", SOURCE, outcome.coupon.external_ref, str(LHR_JFK))
    assert row[4].date() == date(2026, 6, 1)


async def test_duplicates_in_one_batch_and_across_batches_change_nothing(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    first = coupon(member, carrier)
    second = coupon(member, carrier, coupon_number=2, origin="JFK", destination="LHR")

    outcomes = await credit_coupons(db, system, [first, second, first])
    assert [o.status for o in outcomes] == ["credited", "credited", "duplicate"]
    after_first = await balances(db, system, member.account_id)
    assert after_first[Unit.MILES] == 2 * LHR_JFK and after_first[Unit.SEGMENTS] == 2

    again = await credit_coupons(db, system, [second, first])
    assert [o.status for o in again] == ["duplicate", "duplicate"]
    assert await balances(db, system, member.account_id) == after_first


async def test_rejections_carry_reasons_and_credit_nothing(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    closed = await make_member(db, system, status="closed")
    ghost = replace(member, card_number="7999999999")
    batch = [
        coupon(ghost, carrier),
        coupon(member, carrier, destination="XQZ"),
        coupon(member, carrier, booking_class="G"),
        coupon(member, carrier, booking_class="P"),
        coupon(member, carrier, origin="JFK"),  # JFK-JFK
        coupon(member, carrier, flight_date=date.today() + timedelta(days=5)),
        coupon(closed, carrier),
        coupon(member, "ZZ9"),
        coupon(member, carrier, ticket_number="not a ticket"),
    ]
    outcomes = await credit_coupons(db, system, batch)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("rejected", Reason.UNKNOWN_MEMBER),
        ("rejected", Reason.UNKNOWN_AIRPORT),
        ("rejected", Reason.CLASS_NOT_ELIGIBLE),
        ("rejected", Reason.CLASS_NOT_ELIGIBLE),
        ("rejected", Reason.INVALID_COUPON),
        ("rejected", Reason.FLIGHT_IN_FUTURE),
        ("rejected", Reason.MEMBER_NOT_ACTIVE),
        ("rejected", Reason.CARRIER_NOT_ELIGIBLE),
        ("rejected", Reason.INVALID_COUPON),
    ]
    assert await balances(db, system, member.account_id) == {
        Unit.MILES: 0, Unit.STATUS_MILES: 0, Unit.SEGMENTS: 0}
    # A rejected coupon is not "used up": once the cause is fixed it can be credited.
    fixed = await credit_coupons(db, system, [replace(batch[2], booking_class="Y")])
    assert fixed[0].status == "credited"


async def test_a_new_rule_version_applies_from_its_date_and_never_rewrites_past_credits(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db, min_miles=0)
    member = await make_member(db, system)
    [early] = await credit_coupons(db, system, [
        coupon(member, carrier, booking_class="Q", flight_date=date(2026, 3, 1))])
    assert early.miles == 861  # 3442 x 25 %

    await add_rules(db, EarnRuleIn("booking_class", f"{carrier}/Q", date(2026, 4, 1), {
        "cabin": "economy", "milesPercent": 50, "statusMilesPercent": 25}))
    outcomes = await credit_coupons(db, system, [
        coupon(member, carrier, booking_class="Q", flight_date=date(2026, 3, 31)),
        coupon(member, carrier, booking_class="Q", flight_date=date(2026, 4, 1))])
    assert [o.miles for o in outcomes] == [861, 1721]
    assert (await balances(db, system, member.account_id))[Unit.MILES] == 861 + 861 + 1721


async def test_concurrent_batches_sharing_coupons_credit_each_coupon_once(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    members = [await make_member(db, system) for _ in range(6)]
    pool = [coupon(members[i % 6], carrier, coupon_number=1 + i % 4) for i in range(60)]
    # 12 batches of 25 drawn in different orders from the same 60 coupons, all at once.
    batches = [[pool[(k * 7 + j * (k + 1)) % 60] for j in range(25)] for k in range(12)]
    results = await asyncio.gather(*(credit_coupons(db, system, b) for b in batches))

    credited = [o.coupon.external_ref for r in results for o in r if o.status == "credited"]
    assert len(credited) == len(set(credited))
    assert set(credited) == {c.external_ref for b in batches for c in b}
    assert all(o.status in ("credited", "duplicate") for r in results for o in r)
    segments = sum([(await balances(db, system, m.account_id))[Unit.SEGMENTS]
                    for m in members])
    assert segments == len(set(credited))


async def test_a_credited_coupon_stays_a_duplicate_whatever_the_rules_say_later(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    flown = coupon(member, carrier, booking_class="Q", flight_date=date(2026, 5, 5))
    [first] = await credit_coupons(db, system, [flown])
    await add_rules(db, EarnRuleIn("booking_class", f"{carrier}/Q", date(2026, 5, 1), {
        "cabin": "economy", "eligible": False}))
    [again] = await credit_coupons(db, system, [flown])
    assert (first.status, again.status) == ("credited", "duplicate")


async def test_a_pending_claim_is_credited_when_its_coupon_arrives(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    flown = coupon(member, carrier, flight_date=date.today() - timedelta(days=3))
    await db.transaction(lambda s: ClaimService(s).submit(member.id, ClaimRequest(
        ticket_number=flown.ticket_number, flight_number=f"{carrier}{flown.flight_number}",
        flight_date=flown.flight_date)))

    [outcome] = await credit_coupons(db, system, [flown], reevaluate_tiers=True)

    async with db.engine.connect() as conn:
        status, entry_id = (await conn.execute(text(
            "SELECT status, entry_id FROM claims WHERE member_id = :m"),
            {"m": member.id})).one()
    assert (status, entry_id) == ("credited", outcome.entry_id)


async def test_last_activity_only_moves_forward_with_the_latest_flight(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    member = await make_member(db, system)

    async def last_activity() -> date:
        async with db.engine.connect() as conn:
            at = (await conn.execute(text(
                "SELECT last_activity_at FROM members WHERE id = :id"),
                {"id": member.id})).scalar_one()
            day: date = at.date()
            return day

    await credit_coupons(db, system, [coupon(member, carrier, flight_date=date(2026, 5, 1)),
                                      coupon(member, carrier, flight_date=date(2026, 5, 9))])
    assert await last_activity() == date(2026, 5, 9)
    # An older flight credited later (feeds are not in date order) leaves it where it is.
    [older] = await credit_coupons(db, system, [
        coupon(member, carrier, flight_date=date(2026, 4, 2))])
    assert older.status == "credited"
    assert await last_activity() == date(2026, 5, 9)
    await credit_coupons(db, system, [coupon(member, carrier, flight_date=date(2026, 4, 3)),
                                      coupon(member, carrier, flight_date=date(2026, 5, 20))])
    assert await last_activity() == date(2026, 5, 20)


async def test_a_refused_coupon_leaves_no_claim_and_a_credited_one_stays_a_duplicate(
        db: Database, system: SystemAccounts) -> None:
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    closed = await make_member(db, system, status="closed")
    refused = [coupon(closed, carrier), coupon(member, carrier, booking_class="G")]
    credited = coupon(member, carrier)
    outcomes = await credit_coupons(db, system, [*refused, credited])
    assert [(o.status, o.reason) for o in outcomes] == [
        ("rejected", Reason.MEMBER_NOT_ACTIVE), ("rejected", Reason.CLASS_NOT_ELIGIBLE),
        ("credited", None)]
    async with db.engine.connect() as conn:
        claims = (await conn.execute(text(
            "SELECT ticket_number FROM flown_coupons WHERE ticket_number = ANY(:t)"),
            {"t": [c.ticket_number for c in (*refused, credited)]})).scalars().all()
    assert claims == [credited.ticket_number]
    # Credited once: a duplicate whoever's card it comes with now, known or not, open or not.
    for card in ("7999999999", closed.card_number):
        [again] = await credit_coupons(db, system, [replace(credited, card_number=card)])
        assert (again.status, again.detail) == ("duplicate", "credited before")


async def test_an_entrys_details_are_the_coupons_terms_as_json(
        db: Database, system: SystemAccounts) -> None:
    # A cabin name from the rules with what JSON must escape; a promotion of the carrier's.
    carrier = await distance_carrier(db, classes={"J": (200, 200, 1, True)})
    await add_rules(db, EarnRuleIn("booking_class", f"{carrier}/J", date(2021, 1, 1), {
        "cabin": 'Club "World"\\ \u00e9', "milesPercent": 200, "statusMilesPercent": 200}))
    code = f"D{carrier}"
    await add_promotion(db, PromotionIn(code=code, name="Details", fixed_miles=100,
                                        carriers=[carrier]))
    member = await make_member(db, system)
    flown = coupon(member, carrier, booking_class="J", flight_number="7A", coupon_number=3)

    [outcome] = await credit_coupons(db, system, [flown])

    async with db.engine.connect() as conn:
        details, description = (await conn.execute(text(
            "SELECT details, description FROM journal_entries WHERE id = :id"),
            {"id": outcome.entry_id})).one()
    assert details == {
        "ticket": flown.ticket_number, "coupon": 3, "flight": f"{carrier}7A",
        "operatedBy": carrier, "route": "LHR-JFK", "class": "J",
        "cabin": 'Club "World"\\ \u00e9', "distance": LHR_JFK, "baseMiles": 2 * LHR_JFK,
        "tierBonus": 0, "promotions": {code: 100}}
    assert description == f"Flight {carrier}7A LHR-JFK 2026-06-01"
