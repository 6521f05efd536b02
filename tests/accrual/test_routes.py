"""The HTTP side: the flown-coupon feed under scope ``flights``, bad input answered with
problem+json and no change, the admin API of rules and promotions, member registration."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.earning import Coupon
from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind, Unit
from lms.settings import Settings
from tests.accrual.support import balances, carrier_code, coupon, distance_carrier, make_member
from tests.factories import bearer, register_member
from tests.partners.support import admin_headers, assert_problem, issue_key, make_partner

LHR_JFK = 3442


def wire(c: Coupon) -> dict[str, Any]:
    data = asdict(c)
    parts = {k: v for k, v in data.items() if v is not None}
    camel = {"".join(w.title() if i else w for i, w in enumerate(k.split("_"))): v
             for k, v in parts.items()}
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in camel.items()}


async def feed_key(client: httpx.AsyncClient, admin: dict[str, str],
                   scopes: list[str] | None = None) -> dict[str, str]:
    partner = await make_partner(client, admin, kind="airline", rates={})
    return bearer(await issue_key(client, admin, partner["code"], scopes or ["flights"]))


async def test_feed_credits_answers_duplicates_and_rejections_per_coupon(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    key = await feed_key(client, admin)
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    good = coupon(member, carrier)
    body = {"coupons": [wire(good), wire(good), wire(coupon(member, carrier,
                                                             destination="XQZ"))]}
    response = await client.post("/v1/activities/flights:batch", json=body, headers=key)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["credited"], answer["duplicates"], answer["rejected"]) == (1, 1, 1)
    assert answer["outcomes"][0] | {"entryId": 0} == {
        "ticketNumber": good.ticket_number, "couponNumber": 1, "status": "credited",
        "miles": LHR_JFK, "statusMiles": LHR_JFK, "segments": 1, "entryId": 0}
    assert answer["outcomes"][2]["reason"] == "unknown_airport"

    # Sent again concurrently: all duplicates, nothing changes.
    again = await asyncio.gather(*(client.post("/v1/activities/flights:batch",
                                               json={"coupons": [wire(good)]}, headers=key)
                                   for _ in range(5)))
    assert {r.json()["outcomes"][0]["status"] for r in again} == {"duplicate"}
    assert (await balances(db, system, member.account_id))[Unit.MILES] == LHR_JFK


async def test_feed_refuses_bad_input_whole_and_changes_nothing(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    key = await feed_key(client, admin)
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    good = wire(coupon(member, carrier))
    bodies: list[dict[str, Any]] = [{"coupons": [good, good | {"origin": "lhr"}]},
                 {"coupons": [good | {"couponNumber": 0}]},
                 {"coupons": [good | {"flightDate": "2026-02-30"}]},
                 {"coupons": []},
                 {"coupons": [good] * 1001},
                 {"coupons": [good | {"unexpected": 1}]}]
    for body in bodies:
        response = await client.post("/v1/activities/flights:batch", json=body, headers=key)
        assert_problem(response, 422, "validation_error")
    broken = await client.post("/v1/activities/flights:batch", content=b"{not json",
                               headers=key | {"content-type": "application/json"})
    assert_problem(broken, 400, "malformed_body")
    assert (await balances(db, system, member.account_id))[Unit.MILES] == 0

    accrue_only = await feed_key(client, admin, ["accrue"])
    refused = await client.post("/v1/activities/flights:batch", json={"coupons": [good]},
                                headers=accrue_only)
    assert_problem(refused, 403, "insufficient_scope")
    anonymous = await client.post("/v1/activities/flights:batch", json={"coupons": [good]})
    assert_problem(anonymous, 401, "unauthorized")


async def test_admin_adds_rule_versions_and_promotions(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    code = carrier_code()
    rule = {"kind": "carrier", "key": code, "effectiveFrom": "2026-01-01",
            "body": {"name": "New partner", "earnMethod": "revenue",
                     "revenueMilesPerUnit": 5}}
    created = await client.post("/v1/admin/programme/earn-rules", json=rule, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["body"]["revenueMilesPerUnit"] == 5
    again = await client.post("/v1/admin/programme/earn-rules", json=rule, headers=admin)
    assert_problem(again, 409, "rule_version_exists")
    wrong = await client.post("/v1/admin/programme/earn-rules", headers=admin,
                              json=rule | {"effectiveFrom": "2026-02-01",
                                           "body": {"name": "x", "earnMethod": "barter"}})
    assert_problem(wrong, 422, "invalid_rule")
    listed = await client.get("/v1/admin/programme/earn-rules",
                              params={"kind": "carrier", "key": code}, headers=admin)
    assert [r["effectiveFrom"] for r in listed.json()] == ["2026-01-01"]

    promo = {"code": f"P-{uuid.uuid4().hex[:8].upper()}", "name": "Promo", "fixedMiles": 500,
             "carriers": [code], "budget": 1000, "requiresRegistration": True}
    made = await client.post("/v1/admin/programme/promotions", json=promo, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["used"] == 0
    assert_problem(await client.post("/v1/admin/programme/promotions", json=promo,
                                     headers=admin), 409, "promotion_exists")
    assert_problem(await client.post("/v1/admin/programme/promotions", headers=admin,
                                     json=promo | {"code": "NOBONUS", "fixedMiles": 0}),
                   422, "invalid_promotion")

    member = await register_member(client)
    me = bearer(member["accessToken"])
    first = await client.post(f"/v1/me/promotions/{promo['code']}/registration", headers=me)
    second = await client.post(f"/v1/me/promotions/{promo['code']}/registration", headers=me)
    assert (first.status_code, second.status_code) == (201, 200)
    assert_problem(await client.post("/v1/me/promotions/NOPE/registration", headers=me),
                   404, "promotion_not_found")
    assert_problem(await client.get("/v1/admin/programme/promotions", headers=me),
                   403, "forbidden")


async def test_feed_upgrades_a_tier_at_once_when_a_threshold_is_crossed(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    key = await feed_key(client, admin)
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    # 4 x LHR-JFK in J: 4 x 6884 = 27,536 status miles, past SILVER's 25,000.
    coupons = [wire(coupon(member, carrier, booking_class="J", coupon_number=n,
                           flight_date=date.today() - timedelta(days=3)))
               for n in range(1, 5)]
    response = await client.post("/v1/activities/flights:batch", json={"coupons": coupons},
                                 headers=key)
    assert response.json()["credited"] == 4, response.text
    async with db.engine.connect() as conn:
        tier = (await conn.execute(text("SELECT tier FROM members WHERE id = :id"),
                                   {"id": member.id})).scalar_one()
        shapes = (await conn.execute(text(
            "SELECT DISTINCT jsonb_typeof(details) FROM journal_entries "
            "WHERE source = 'flight' AND external_ref = ANY(:refs)"),
            {"refs": [f"{c['ticketNumber']}/{c['couponNumber']}" for c in coupons]})).all()
    assert tier == "SILVER"
    assert shapes == [("object",)]  # details stored as JSON objects on this path too


async def test_a_reversed_flight_takes_back_everything_and_spent_miles_become_debt(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    key = await feed_key(client, admin)
    carrier = await distance_carrier(db)
    member = await make_member(db, system)
    flown = coupon(member, carrier)
    credited = await client.post("/v1/activities/flights:batch",
                                 json={"coupons": [wire(flown)]}, headers=key)
    assert credited.json()["credited"] == 1

    async def spend(session: AsyncSession) -> None:
        await Ledger(session, system).debit(member.account_id, 3000, actor=Actor("system"),
                                            kind=EntryKind.REDEMPTION)

    await db.transaction(spend)
    path = f"/v1/activities/flights/{flown.ticket_number}/{flown.coupon_number}/reversal"
    headers = key | {"Idempotency-Key": str(uuid.uuid4())}
    answers = await asyncio.gather(*(client.post(path, json={"reason": "refunded"},
                                                 headers=headers) for _ in range(3)))
    assert {r.status_code for r in answers} == {201}
    assert answers[0].json() | {"entryId": 0} == {
        "ticketNumber": flown.ticket_number, "couponNumber": 1, "entryId": 0,
        "miles": LHR_JFK, "statusMiles": LHR_JFK, "segments": 1,
        "balanceAfter": -3000, "debt": 3000}
    assert await balances(db, system, member.account_id) == {
        Unit.MILES: -3000, Unit.STATUS_MILES: 0, Unit.SEGMENTS: 0}

    # A new key: the entry is reversed once, ever; the coupon is never credited again.
    again = await client.post(path, json={}, headers=key | {"Idempotency-Key": "x-2"})
    assert_problem(again, 409, "already_reversed")
    resent = await client.post("/v1/activities/flights:batch",
                               json={"coupons": [wire(flown)]}, headers=key)
    assert resent.json()["duplicates"] == 1
    unknown = await client.post("/v1/activities/flights/0000000000000/1/reversal", json={},
                                headers=key | {"Idempotency-Key": "x-3"})
    assert_problem(unknown, 404, "coupon_not_credited")
