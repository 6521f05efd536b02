"""Buying status: offers only within the configured distance of a tier, payment through the
fake provider, the tier held to the end of the next qualification period, and the nightly
pass leaving it alone until then."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lms.db import Database
from lms.tiers.policy import upgrade_valid_until
from lms.tiers.service import TierService
from tests.conftest import LedgerRunner
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.payments.support import FakeProvider, provider_completes
from tests.tiers.support import earn, history, new_member, set_standing, standing


async def offers(api: httpx.AsyncClient, member: dict[str, Any]) -> dict[str, Any]:
    response = await api.get("/v1/me/status-purchases/offers",
                             headers=bearer(member["accessToken"]))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def offered(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["tier"]: o for o in body["offers"]}


async def buy_status(api: httpx.AsyncClient, member: dict[str, Any], tier: str
                     ) -> httpx.Response:
    return await api.post("/v1/me/status-purchases", json={"tier": tier},
                          headers=bearer(member["accessToken"])
                          | {"Idempotency-Key": str(uuid.uuid4())})


async def member_with(api: httpx.AsyncClient, db: Database, in_ledger: LedgerRunner[Any],
                      *, status_miles: int = 0, segments: int = 0) -> dict[str, Any]:
    member = await new_member(api, db)
    await earn(in_ledger, member["accountId"], status_miles=status_miles, segments=segments)
    return member


async def valid_until_bounds(db: Database, before: datetime, after: datetime
                             ) -> tuple[datetime, datetime]:
    policy = (await db.transaction(lambda s: TierService(s).policies(after))).qualification
    return upgrade_valid_until(policy, before), upgrade_valid_until(policy, after)


async def test_offers_start_at_80_percent_of_a_threshold(
        api: httpx.AsyncClient, db: Database, in_ledger: LedgerRunner[Any]) -> None:
    # SILVER needs 25,000 status miles or 30 segments: 80% is 20,000 or 24.
    just_outside = await member_with(api, db, in_ledger, status_miles=19999, segments=23)
    body = await offers(api, just_outside)
    assert body["tier"] == "BASIC" and body["minProgressPercent"] == 80
    assert body["offers"] == []
    assert_problem(await buy_status(api, just_outside, "SILVER"), 409, "status_not_offered")

    # One more status mile is inside.
    await earn(in_ledger, just_outside["accountId"], status_miles=1)
    silver = offered(await offers(api, just_outside))["SILVER"]
    assert silver["missingStatusMiles"] == 5000 and silver["missingSegments"] == 7
    # 199.00 EUR plus 0.05 EUR for each of the 5,000 missing status miles.
    assert silver["price"] == {"amount": 44900, "currency": "EUR"}

    by_segments = await member_with(api, db, in_ledger, segments=24)
    assert set(offered(await offers(api, by_segments))) == {"SILVER"}
    # GOLD from 80% of its 50,000 status miles; SILVER, already reached by these miles (the
    # next reevaluation grants it), is not sold.
    near_gold = await member_with(api, db, in_ledger, status_miles=40000)
    assert set(offered(await offers(api, near_gold))) == {"GOLD"}
    short_of_gold = await member_with(api, db, in_ledger, status_miles=39999)
    assert offered(await offers(api, short_of_gold)) == {}
    assert_problem(await buy_status(api, short_of_gold, "GOLD"), 409, "status_not_offered")


async def test_a_bought_tier_lasts_to_the_end_of_the_next_period(
        api: httpx.AsyncClient, db: Database, in_ledger: LedgerRunner[Any],
        provider: FakeProvider) -> None:
    member = await member_with(api, db, in_ledger, status_miles=22000)
    response = await buy_status(api, member, "SILVER")
    assert response.status_code == 201, response.text
    purchase = response.json()
    assert purchase["status"] == "pending" and purchase["tier"] == "SILVER"
    assert purchase["price"] == {"amount": 19900 + 3000 * 5, "currency": "EUR"}
    assert (await standing(db, member["id"]))[0] == "BASIC"

    before = datetime.now(UTC)
    delivery = await provider_completes(provider, purchase)
    after = datetime.now(UTC)
    assert delivery["statusCode"] == 200, delivery

    tier, valid_until = await standing(db, member["id"])
    low, high = await valid_until_bounds(db, before, after)
    assert tier == "SILVER" and valid_until is not None and low <= valid_until <= high
    assert await history(db, member["id"]) == [("BASIC", "SILVER", "purchase")]
    read = (await api.get(f"/v1/me/status-purchases/{purchase['id']}",
                          headers=bearer(member["accessToken"]))).json()
    assert read["status"] == "completed" and read["refundDue"] is False
    assert datetime.fromisoformat(read["validUntil"]) == valid_until
    tier_view = (await api.get("/v1/me/tier", headers=bearer(member["accessToken"]))).json()
    assert tier_view["tier"]["code"] == "SILVER"
    # Now SILVER, the member is offered nothing more (GOLD is far).
    assert (await offers(api, member))["offers"] == []

    # The nightly pass and per-member reevaluation leave the bought tier alone until it ends.
    day_before = valid_until - timedelta(days=1)
    assert await db.transaction(lambda s: TierService(s).reevaluate_range(
        member["accountId"], member["accountId"] + 1, now=day_before)) == 0
    assert await db.transaction(
        lambda s: TierService(s).reevaluate(member["id"], now=day_before)) is None
    assert await standing(db, member["id"]) == ("SILVER", valid_until)
    # At its end, not requalified by what was earned in that period: one tier down.
    change = await db.transaction(lambda s: TierService(s).reevaluate(
        member["id"], now=valid_until + timedelta(days=1)))
    assert change is not None and change.to_code == "BASIC"


async def test_a_member_already_above_the_tier_keeps_it_and_a_refund_is_flagged(
        api: httpx.AsyncClient, db: Database, in_ledger: LedgerRunner[Any],
        provider: FakeProvider) -> None:
    member = await member_with(api, db, in_ledger, status_miles=21000)
    purchase = (await buy_status(api, member, "SILVER")).json()
    gold_until = datetime.now(UTC) + timedelta(days=100)
    await set_standing(db, member["id"], "GOLD", gold_until)

    delivery = await provider_completes(provider, purchase)
    assert delivery["statusCode"] == 200, delivery
    assert await standing(db, member["id"]) == ("GOLD", gold_until)
    read = (await api.get(f"/v1/me/status-purchases/{purchase['id']}",
                          headers=bearer(member["accessToken"]))).json()
    assert read["status"] == "completed" and read["refundDue"] is True
    assert await history(db, member["id"]) == []


async def test_a_member_already_on_the_tier_keeps_the_later_validity(
        api: httpx.AsyncClient, db: Database, in_ledger: LedgerRunner[Any],
        provider: FakeProvider) -> None:
    member = await member_with(api, db, in_ledger, status_miles=21000)
    purchase = (await buy_status(api, member, "SILVER")).json()
    later = datetime.now(UTC) + timedelta(days=600)
    await set_standing(db, member["id"], "SILVER", later)
    assert (await provider_completes(provider, purchase))["statusCode"] == 200
    assert await standing(db, member["id"]) == ("SILVER", later)
    assert await history(db, member["id"]) == [("SILVER", "SILVER", "purchase")]

    sooner = await member_with(api, db, in_ledger, status_miles=21000)
    bought = (await buy_status(api, sooner, "SILVER")).json()
    await set_standing(db, sooner["id"], "SILVER", datetime.now(UTC) + timedelta(days=10))
    before = datetime.now(UTC)
    assert (await provider_completes(provider, bought))["statusCode"] == 200
    tier, valid_until = await standing(db, sooner["id"])
    low, high = await valid_until_bounds(db, before, datetime.now(UTC))
    assert tier == "SILVER" and valid_until is not None and low <= valid_until <= high


async def test_a_canceled_status_payment_changes_no_tier(
        api: httpx.AsyncClient, db: Database, in_ledger: LedgerRunner[Any],
        provider: FakeProvider) -> None:
    member = await member_with(api, db, in_ledger, segments=25)
    purchase = (await buy_status(api, member, "SILVER")).json()
    assert (await provider_completes(provider, purchase, status="canceled"))[
        "statusCode"] == 200
    assert (await standing(db, member["id"]))[0] == "BASIC"
    listed = (await api.get("/v1/me/status-purchases",
                            headers=bearer(member["accessToken"]))).json()
    assert [(p["id"], p["status"]) for p in listed] == [(purchase["id"], "canceled")]
