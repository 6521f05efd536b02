"""Member consent codes: single use, bound to a partner, stored hashed; wrong codes and
unknown cards answer alike and five of them lock the card's redemption and tell the member."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from lms.db import Database
from lms.redemption.codes import code_hash
from lms.settings import Settings
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.redemption.support import (
    hold_body,
    miles_of,
    new_code,
    open_hold,
    redeeming_partner,
    scalar,
)


def strip_instance(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "instance"}


async def test_code_is_stored_hashed_and_used_once(
        client: httpx.AsyncClient, db: Database, settings: Settings, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    assert len(code) == 8 and code.isdigit()
    stored = await scalar(db, "SELECT code_hash FROM redemption_codes WHERE member_id = :m",
                          m=member["member"]["id"])
    assert stored == code_hash(settings.redemption_code_secret, member["card"], code)
    assert code not in stored

    first = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert first.status_code == 201, first.text
    again = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert_problem(again, 403, "invalid_member_code")
    assert (await miles_of(client, member))["held"] == 1000


async def test_unknown_card_and_wrong_code_answer_alike(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    wrong = "00000000" if code != "00000000" else "11111111"
    by_wrong_code = await open_hold(client, shop["key"], hold_body(member["card"], wrong))
    by_unknown_card = await open_hold(client, shop["key"], hold_body("7999999999999999", code))
    body = assert_problem(by_wrong_code, 403, "invalid_member_code")
    other = assert_problem(by_unknown_card, 403, "invalid_member_code")
    assert strip_instance(body) == strip_instance(other)
    assert by_wrong_code.headers.keys() == by_unknown_card.headers.keys()
    # The same for a quote.
    quote = await client.post("/v1/partner/redemption-quotes", headers=bearer(shop["key"]),
                              json={"cardNumber": "7999999999999998", "memberCode": code,
                                    "orderAmount": 1000, "currency": "EUR"})
    assert strip_instance(assert_problem(quote, 403, "invalid_member_code")) == \
        strip_instance(body)


async def test_a_code_bound_to_one_partner_fails_for_another(
        client: httpx.AsyncClient, admin: dict[str, str], shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    other = await redeeming_partner(client, admin)
    code = await new_code(client, member, shop["partner"]["code"])
    refused = await open_hold(client, other["key"], hold_body(member["card"], code))
    assert_problem(refused, 403, "invalid_member_code")
    accepted = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert accepted.status_code == 201, accepted.text
    unknown = await client.post("/v1/me/redemption-codes", json={"partnerCode": "no-such"},
                                headers=bearer(member["accessToken"]))
    assert_problem(unknown, 422, "unknown_partner")


async def test_expired_code_is_refused(client: httpx.AsyncClient, db: Database,
                                       shop: dict[str, Any], member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    await scalar(db, "UPDATE redemption_codes SET expires_at = now() - interval '1 second' "
                     "WHERE member_id = :m RETURNING id", m=member["member"]["id"])
    refused = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert_problem(refused, 403, "invalid_member_code")


async def test_five_wrong_codes_lock_the_card_and_tell_the_member(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    wrong = [f"{n:08d}" for n in range(1, 7) if f"{n:08d}" != code][:5]
    for guess in wrong[:4]:
        assert_problem(await open_hold(client, shop["key"], hold_body(member["card"], guess)),
                       403, "invalid_member_code")
    status = await client.get("/v1/me/redemption-codes/status",
                              headers=bearer(member["accessToken"]))
    assert status.json() == {"locked": False, "lockedUntil": None, "recentFailures": 4,
                             "activeCodes": 1}
    # The fifth wrong code is counted through a quote: quotes count too.
    quote = await client.post("/v1/partner/redemption-quotes", headers=bearer(shop["key"]),
                              json={"cardNumber": member["card"], "memberCode": wrong[4],
                                    "orderAmount": 1000, "currency": "EUR"})
    assert_problem(quote, 403, "invalid_member_code")

    # Now even the right code is refused, and the member knows why.
    locked = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert_problem(locked, 403, "redemption_locked")
    status = await client.get("/v1/me/redemption-codes/status",
                              headers=bearer(member["accessToken"]))
    assert status.json()["locked"] is True and status.json()["lockedUntil"]
    assert status.json()["activeCodes"] == 0  # live codes were revoked
    events = await scalar(db, "SELECT count(*) FROM outbox_events WHERE topic = "
                              "'member.redemption_locked' AND (payload->>'memberId')::bigint"
                              " = :m", m=member["member"]["id"])
    assert events == 1
    fresh = await client.post("/v1/me/redemption-codes", json={},
                              headers=bearer(member["accessToken"]))
    assert_problem(fresh, 403, "redemption_locked")
    assert (await miles_of(client, member))["held"] == 0

    # When the lock ends, a new code works again.
    await scalar(db, "UPDATE redemption_guards SET locked_until = now() - interval '1 second'"
                     " WHERE card_number = :c RETURNING 1", c=member["card"])
    code = await new_code(client, member)
    opened = await open_hold(client, shop["key"], hold_body(member["card"], code))
    assert opened.status_code == 201, opened.text


async def test_unknown_cards_are_locked_the_same_way(
        client: httpx.AsyncClient, shop: dict[str, Any]) -> None:
    card = "7000000000000123"
    for n in range(5):
        assert_problem(await open_hold(client, shop["key"], hold_body(card, f"{n:08d}")),
                       403, "invalid_member_code")
    assert_problem(await open_hold(client, shop["key"], hold_body(card, "12345678")),
                   403, "redemption_locked")


async def test_a_locked_member_cannot_redeem(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    await scalar(db, "UPDATE members SET status = 'locked' WHERE id = :m RETURNING 1",
                 m=member["member"]["id"])
    assert_problem(await open_hold(client, shop["key"], hold_body(member["card"], code)),
                   409, "member_locked")
    assert_problem(await client.post("/v1/me/redemption-codes", json={},
                                     headers=bearer(member["accessToken"])),
                   409, "member_locked")


async def test_concurrent_guesses_are_counted_one_by_one(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    guesses = [f"{n:08d}" for n in range(20, 40) if f"{n:08d}" != code][:10]
    responses = await asyncio.gather(*(
        open_hold(client, shop["key"], hold_body(member["card"], guess))
        for guess in guesses))
    codes = sorted(r.json()["code"] for r in responses)
    # Checks of one card are serialised: exactly five guesses are weighed, then the lock.
    assert codes == ["invalid_member_code"] * 5 + ["redemption_locked"] * 5
