"""Holds, captures, voids and refunds: the ledger moves miles member -> clearing and back;
exactly the affordable concurrent holds succeed; retries under one Idempotency-Key change
nothing; refunds never exceed the capture; expired holds; isolation between partners."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.tasks import expire_due_holds
from lms.ledger.types import Unit
from lms.settings import Settings
from tests.conftest import LedgerRunner
from tests.factories import bearer
from tests.partners.support import assert_problem
from tests.redemption.support import (
    capture,
    funded_member,
    hold_body,
    hold_for,
    idem,
    miles_of,
    new_code,
    open_hold,
    redeeming_partner,
    refund,
    scalar,
    void,
)


async def clearing_miles(in_ledger: LedgerRunner[Any], shop: dict[str, Any]) -> int:
    """MILES on the partner's clearing account: the sum over all its shards."""
    async def read(ledger: Ledger) -> int:
        repo = await ledger.repo()
        return int(await repo.conn.fetchval(
            "SELECT COALESCE(sum(b.posted), 0) FROM balances b JOIN accounts a "
            "ON a.id = b.account_id WHERE a.kind = 'system' AND a.code = $1 "
            "AND b.unit = $2", f"partner:{shop['partner']['id']}", str(Unit.MILES)))

    result: int = await in_ledger(read)
    return result


async def test_hold_partial_capture_refund(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        in_ledger: LedgerRunner[Any], db: Database) -> None:
    hold = await hold_for(client, shop, member, miles=3000, cashAmount=2000,
                          orderReference="ORD-1")
    assert hold["status"] == "pending" and hold["miles"] == 3000
    assert hold["orderReference"] == "ORD-1" and hold["expiresAt"]
    assert await miles_of(client, member) == {"posted": 10_000, "held": 3000,
                                              "available": 7000}
    actor = await scalar(db, "SELECT actor_type || ':' || actor_id FROM holds WHERE id = :h",
                         h=hold["id"])
    assert actor == f"partner:{shop['partner']['id']}"

    captured = await capture(client, shop["key"], hold["id"], 2000)
    assert captured.status_code == 201, captured.text
    redemption = captured.json()
    assert redemption["miles"] == 2000 and redemption["refundableMiles"] == 2000
    assert redemption["milesValue"] == 2000  # 2000 miles at 1 cent
    assert await miles_of(client, member) == {"posted": 8000, "held": 0, "available": 8000}
    assert await clearing_miles(in_ledger, shop) == 2000
    kind = await scalar(db, "SELECT kind FROM journal_entries e JOIN redemptions r "
                            "ON r.entry_id = e.id WHERE r.id = :r", r=redemption["id"])
    assert kind == "capture"

    got = await client.get(f"/v1/partner/holds/{hold['id']}", headers=bearer(shop["key"]))
    assert got.json()["status"] == "captured" and got.json()["capturedMiles"] == 2000
    assert got.json()["redemptionId"] == redemption["id"]

    first = await refund(client, shop["key"], redemption["id"], 500)
    assert first.status_code == 201, first.text
    assert first.json()["miles"] == 500
    beyond = await refund(client, shop["key"], redemption["id"], 1501)
    assert_problem(beyond, 409, "refund_exceeds_capture")
    rest = await refund(client, shop["key"], redemption["id"])
    assert rest.status_code == 201 and rest.json()["miles"] == 1500
    assert_problem(await refund(client, shop["key"], redemption["id"], 1), 409,
                   "refund_exceeds_capture")
    assert (await miles_of(client, member))["available"] == 10_000
    assert await clearing_miles(in_ledger, shop) == 0

    got = await client.get(f"/v1/partner/redemptions/{redemption['id']}",
                           headers=bearer(shop["key"]))
    assert got.json()["refundedMiles"] == 2000 and got.json()["refundableMiles"] == 0
    assert [r["miles"] for r in got.json()["refunds"]] == [500, 1500]
    listed = await client.get("/v1/partner/holds", params={"orderReference": "ORD-1"},
                              headers=bearer(shop["key"]))
    assert [h["id"] for h in listed.json()] == [hold["id"]]
    listed = await client.get("/v1/partner/redemptions", params={"orderReference": "ORD-1"},
                              headers=bearer(shop["key"]))
    assert [r["id"] for r in listed.json()] == [redemption["id"]]


async def test_void_releases_and_cannot_be_captured_after(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    hold = await hold_for(client, shop, member)
    voided = await void(client, shop["key"], hold["id"])
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert (await miles_of(client, member))["available"] == 10_000
    assert_problem(await capture(client, shop["key"], hold["id"]), 409, "hold_not_pending")
    assert_problem(await void(client, shop["key"], hold["id"]), 409, "hold_not_pending")


async def test_concurrent_holds_take_exactly_what_is_affordable(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        shop: dict[str, Any]) -> None:
    member = await funded_member(client, db, system, 1000)
    codes = [await new_code(client, member) for _ in range(10)]
    responses = await asyncio.gather(*(
        open_hold(client, shop["key"], hold_body(member["card"], code, miles=300,
                                                 cashAmount=0))
        for code in codes))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 7, [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] == "insufficient_miles"
    assert await miles_of(client, member) == {"posted": 1000, "held": 900, "available": 100}
    # Codes of refused holds are not used up.
    used = await scalar(db, "SELECT count(*) FROM redemption_codes WHERE member_id = :m "
                            "AND used_at IS NOT NULL", m=member["member"]["id"])
    assert used == 3


async def test_retries_replay_and_change_nothing(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        in_ledger: LedgerRunner[Any]) -> None:
    code = await new_code(client, member)
    body = hold_body(member["card"], code, miles=2000)
    key = str(uuid.uuid4())
    first = await open_hold(client, shop["key"], body, key)
    assert first.status_code == 201, first.text
    again = await asyncio.gather(*(open_hold(client, shop["key"], body, key)
                                   for _ in range(3)))
    for r in again:
        assert r.status_code == 201 and r.json() == first.json()
        assert r.headers["Idempotency-Replayed"] == "true"
    assert (await miles_of(client, member))["held"] == 2000
    changed = await open_hold(client, shop["key"], body | {"miles": 1999}, key)
    assert_problem(changed, 409, "idempotency_key_reused")

    hold_id = first.json()["id"]
    capture_key = str(uuid.uuid4())
    captured = await capture(client, shop["key"], hold_id, 1500, capture_key)
    replay = await capture(client, shop["key"], hold_id, 1500, capture_key)
    assert replay.status_code == 201 and replay.json() == captured.json()
    assert_problem(await capture(client, shop["key"], hold_id, 1000, capture_key), 409,
                   "idempotency_key_reused")
    redemption_id = captured.json()["id"]
    refund_key = str(uuid.uuid4())
    refunded = await refund(client, shop["key"], redemption_id, 400, refund_key)
    replays = await asyncio.gather(*(refund(client, shop["key"], redemption_id, 400,
                                            refund_key) for _ in range(3)))
    assert all(r.json() == refunded.json() for r in replays)
    assert await clearing_miles(in_ledger, shop) == 1100
    assert await miles_of(client, member) == {"posted": 8900, "held": 0, "available": 8900}

    missing = await client.post("/v1/partner/holds", json=body, headers=bearer(shop["key"]))
    assert_problem(missing, 400, "idempotency_key_required")
    missing = await client.post(f"/v1/partner/holds/{hold_id}/void",
                                headers=bearer(shop["key"]))
    assert_problem(missing, 400, "idempotency_key_required")


async def test_simultaneous_first_tries_under_one_key_make_one_hold(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    code = await new_code(client, member)
    body = hold_body(member["card"], code, miles=700)
    key = str(uuid.uuid4())
    responses = await asyncio.gather(*(open_hold(client, shop["key"], body, key)
                                       for _ in range(6)))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotency-Replayed") == "true" for r in responses) == 5
    assert (await miles_of(client, member))["held"] == 700
    # Retries are not wrong guesses.
    failures = await scalar(db, "SELECT coalesce(max(failures), 0) FROM redemption_guards "
                                "WHERE card_number = :c", c=member["card"])
    assert failures == 0


async def test_concurrent_refunds_never_exceed_the_capture(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        in_ledger: LedgerRunner[Any]) -> None:
    hold = await hold_for(client, shop, member, miles=1000, cashAmount=0)
    redemption = (await capture(client, shop["key"], hold["id"])).json()
    responses = await asyncio.gather(*(refund(client, shop["key"], redemption["id"], 300)
                                       for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * 3
    got = await client.get(f"/v1/partner/redemptions/{redemption['id']}",
                           headers=bearer(shop["key"]))
    assert got.json()["refundedMiles"] == 900
    assert await clearing_miles(in_ledger, shop) == 100
    assert (await miles_of(client, member))["posted"] == 9900


async def test_expired_hold_cannot_be_captured_or_voided(
        client: httpx.AsyncClient, db: Database, shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    hold = await hold_for(client, shop, member, ttlSeconds=1)
    await asyncio.sleep(1.2)
    assert_problem(await capture(client, shop["key"], hold["id"]), 409, "hold_expired")
    assert_problem(await void(client, shop["key"], hold["id"]), 409, "hold_expired")
    got = await client.get(f"/v1/partner/holds/{hold['id']}", headers=bearer(shop["key"]))
    assert got.json()["status"] == "expired"  # expired on read
    assert (await miles_of(client, member))["held"] == 0

    other = await hold_for(client, shop, member, ttlSeconds=1)
    await asyncio.sleep(1.2)
    assert await expire_due_holds(db, 100) >= 1  # the beat job's work
    assert (await miles_of(client, member))["held"] == 0
    got = await client.get(f"/v1/partner/holds/{other['id']}", headers=bearer(shop["key"]))
    assert got.json()["status"] == "expired"
    too_long = await open_hold(client, shop["key"], hold_body(
        member["card"], await new_code(client, member), ttlSeconds=7 * 86400 + 1))
    assert_problem(too_long, 422, "validation_error")


async def test_another_partners_hold_is_not_found(
        client: httpx.AsyncClient, admin: dict[str, str], shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    other = await redeeming_partner(client, admin)
    hold = await hold_for(client, shop, member, miles=2000, cashAmount=0)
    captured_hold = await hold_for(client, shop, member, miles=1000, cashAmount=0)
    redemption = (await capture(client, shop["key"], captured_hold["id"])).json()
    missing_hold, missing_redemption = 9_000_000_000, 9_000_000_000
    for hold_id in (hold["id"], missing_hold):
        got = await client.get(f"/v1/partner/holds/{hold_id}", headers=bearer(other["key"]))
        body = assert_problem(got, 404, "hold_not_found")
        assert set(body) == {"type", "title", "status", "code", "detail", "instance"}
        assert_problem(await capture(client, other["key"], hold_id), 404, "hold_not_found")
        assert_problem(await void(client, other["key"], hold_id), 404, "hold_not_found")
    for redemption_id in (redemption["id"], missing_redemption):
        assert_problem(await client.get(f"/v1/partner/redemptions/{redemption_id}",
                                        headers=bearer(other["key"])),
                       404, "redemption_not_found")
        assert_problem(await refund(client, other["key"], redemption_id), 404,
                       "redemption_not_found")
    listed = await client.get("/v1/partner/holds",
                              params={"orderReference": hold["orderReference"]},
                              headers=bearer(other["key"]))
    assert listed.json() == []
    assert (await miles_of(client, member))["held"] == 2000


async def test_scope_redeem_is_needed(client: httpx.AsyncClient, admin: dict[str, str],
                                      member: dict[str, Any]) -> None:
    from tests.partners.support import issue_key, make_partner

    partner = await make_partner(client, admin, valuePerMileMilliMinor=1000)
    key = await issue_key(client, admin, partner["code"], ["accrue"])
    response = await client.post("/v1/partner/holds", json=hold_body(member["card"], "1"),
                                 headers=idem(key))
    assert_problem(response, 403, "insufficient_scope")


async def test_cash_share_and_currency_are_checked(
        client: httpx.AsyncClient, admin: dict[str, str], member: dict[str, Any],
        settings: Settings) -> None:
    shop = await redeeming_partner(client, admin, value=1000, min_cash_bp=2000)
    code = await new_code(client, member)
    # 1000 miles are worth 1000 cents; with 200 cents cash they pay 83% of the order.
    too_little = await open_hold(client, shop["key"], hold_body(
        member["card"], code, miles=1000, cashAmount=200))
    assert_problem(too_little, 422, "cash_share_too_low")
    wrong_currency = await open_hold(client, shop["key"], hold_body(
        member["card"], code, miles=1000, cashAmount=250, currency="USD"))
    assert_problem(wrong_currency, 422, "currency_mismatch")
    ok = await open_hold(client, shop["key"], hold_body(member["card"], code, miles=1000,
                                                        cashAmount=250))
    assert ok.status_code == 201, ok.text
    unpriced = await redeeming_partner(client, admin, value=0)
    refused = await open_hold(client, unpriced["key"], hold_body(
        member["card"], await new_code(client, member)))
    assert_problem(refused, 409, "redemption_not_offered")


async def test_concurrent_captures_and_refunds_of_one_partner_sum_over_its_shards(
        client: httpx.AsyncClient, shop: dict[str, Any], db: Database,
        system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    """Captures of several members at one partner run side by side on the shards of its
    clearing account; what the account holds is the sum over them, also after refunds."""
    members = [await funded_member(client, db, system, 5000) for _ in range(6)]
    holds = [await hold_for(client, shop, m, miles=1000) for m in members]
    captured = await asyncio.gather(*(capture(client, shop["key"], h["id"]) for h in holds))
    assert [r.status_code for r in captured] == [201] * len(holds), [
        r.text for r in captured]
    assert await clearing_miles(in_ledger, shop) == 1000 * len(holds)
    used = await scalar(db, "SELECT count(DISTINCT p.account_id) FROM postings p "
                            "JOIN accounts a ON a.id = p.account_id WHERE a.code = :code",
                        code=f"partner:{shop['partner']['id']}")
    assert used > 1
    refunded = await asyncio.gather(*(refund(client, shop["key"], r.json()["id"], 400)
                                      for r in captured))
    assert [r.status_code for r in refunded] == [201] * len(holds)
    assert await clearing_miles(in_ledger, shop) == 600 * len(holds)
    for m in members:
        assert (await miles_of(client, m))["posted"] == 5000 - 600
