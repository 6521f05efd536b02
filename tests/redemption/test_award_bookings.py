"""A member's own award booking: a hold through the internal airline partner, captured or
voided by the airline's booking system with that partner's key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from lms.db import Database
from tests.factories import bearer
from tests.partners.support import assert_problem, issue_key
from tests.redemption.support import capture, miles_of, scalar, void


async def book(client: httpx.AsyncClient, member: dict[str, Any], miles: int,
               key: str | None = None) -> httpx.Response:
    return await client.post("/v1/me/award-bookings",
                             json={"miles": miles, "orderReference": "PNR-ABC123"},
                             headers=bearer(member["accessToken"])
                             | {"Idempotency-Key": key or str(uuid.uuid4())})


async def test_award_booking_through_the_internal_airline(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        member: dict[str, Any]) -> None:
    key = str(uuid.uuid4())
    booked = await book(client, member, 4000, key)
    assert booked.status_code == 201, booked.text
    assert booked.json()["status"] == "pending" and booked.json()["cashAmount"] == 0
    replay = await book(client, member, 4000, key)
    assert replay.json() == booked.json()
    assert (await miles_of(client, member))["held"] == 4000
    partner_id = await scalar(db, "SELECT id FROM partners WHERE code = 'lm-awards'")
    actor = await scalar(db, "SELECT actor_id FROM holds WHERE id = :h",
                         h=booked.json()["id"])
    assert actor == str(partner_id)

    airline = await issue_key(client, admin, "lm-awards", ["redeem"])
    captured = await capture(client, airline, booked.json()["id"])
    assert captured.status_code == 201, captured.text
    assert (await miles_of(client, member))["posted"] == 6000

    second = await book(client, member, 1000)
    assert (await void(client, airline, second.json()["id"])).json()["status"] == "voided"
    assert_problem(await book(client, member, 7000), 409, "insufficient_miles")
    missing = await client.post("/v1/me/award-bookings",
                                json={"miles": 1, "orderReference": "X"},
                                headers=bearer(member["accessToken"]))
    assert_problem(missing, 400, "idempotency_key_required")
