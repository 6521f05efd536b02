"""Partner accruals and reversals: credited once, ever; rates by effective date; partial
reversals never beyond what was credited, also concurrently; isolation between partners."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.repository import MemberRepository
from lms.db import Database
from lms.ledger.errors import InsufficientMiles
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind
from tests.conftest import LedgerRunner
from tests.factories import TEST_ACTOR, bearer, register_member
from tests.partners.support import (
    accrual_body,
    accrue,
    assert_problem,
    clearing_posted,
    issue_key,
    make_partner,
    now,
    reverse,
    set_rate,
)


@pytest.fixture
async def member(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register_member(client)


async def miles_of(client: httpx.AsyncClient, member: dict[str, Any]) -> dict[str, int]:
    response = await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))
    assert response.status_code == 200, response.text
    [miles] = [b for b in response.json()["balances"] if b["unit"] == "MILES"]
    return {"posted": miles["posted"], "available": miles["available"]}


async def debt_of(client: httpx.AsyncClient, member: dict[str, Any]) -> tuple[int, int]:
    response = await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))
    [miles] = [b for b in response.json()["balances"] if b["unit"] == "MILES"]
    return miles["available"], miles["debt"]


async def test_accrual_credits_the_member_at_the_rate(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        db: Database) -> None:
    card = member["member"]["cardNumber"]
    response = await accrue(client, shop["key"], accrual_body(card, amount=12345))
    assert response.status_code == 201, response.text
    body = response.json()
    # 123.45 EUR at 1.5 miles per EUR, rounded down
    assert body["miles"] == 185 and body["cardNumber"] == card
    assert body["balanceAfter"] == 185 and isinstance(body["id"], int)
    assert (await miles_of(client, member))["posted"] == 185
    got = await client.get(f"/v1/partner/accruals/{body['partnerTxnId']}",
                           headers=bearer(shop["key"]))
    assert got.status_code == 200 and got.json()["miles"] == 185
    # The partner's clearing account (all its shards) carries what it issued (settlement
    # bills it).
    assert await clearing_posted(db, shop["partner"]["id"]) == -185
    await reverse(client, shop["key"], body["partnerTxnId"], 2345)
    assert await clearing_posted(db, shop["partner"]["id"]) == -185 + 35


async def test_accrual_needs_an_idempotency_key(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    response = await client.post("/v1/partner/accruals", headers=bearer(shop["key"]),
                                 json=accrual_body(member["member"]["cardNumber"]))
    assert_problem(response, 400, "idempotency_key_required")


async def test_bad_accruals_are_problems_and_change_nothing(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    card = member["member"]["cardNumber"]
    key = shop["key"]
    unknown_card = "1" * 15 + ("0" if card[-1] != "0" else "1")
    assert_problem(await accrue(client, key, accrual_body(unknown_card)), 404,
                   "member_not_found")
    assert_problem(await accrue(client, key, accrual_body(card, currency="USD")), 422,
                   "currency_mismatch")
    assert_problem(await accrue(client, key, accrual_body(card, category="fuel")), 422,
                   "no_earn_rate")
    future = (now() + timedelta(hours=2)).isoformat()
    assert_problem(await accrue(client, key, accrual_body(card, occurredAt=future)), 422,
                   "invalid_occurred_at")
    assert_problem(await accrue(client, key, accrual_body(card, amount=0)), 422,
                   "validation_error")
    assert_problem(await accrue(client, key, accrual_body(card, partnerTxnId="a/b")), 422,
                   "validation_error")
    assert (await miles_of(client, member))["posted"] == 0


async def test_same_idempotency_key_concurrently_credits_once_and_replays(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    body = accrual_body(member["member"]["cardNumber"])
    idem = str(uuid.uuid4())
    responses = await asyncio.gather(*(accrue(client, shop["key"], body, idem)
                                       for _ in range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1
    for r in responses:
        if r.status_code == 409:
            assert_problem(r, 409, "idempotency_request_unfinished")
        else:
            assert r.status_code == 201, r.text
    entry_ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(entry_ids) == 1
    replay = await accrue(client, shop["key"], body, idem)
    assert replay.status_code == 201 and replay.headers["Idempotency-Replayed"] == "true"
    assert replay.json()["id"] in entry_ids
    assert (await miles_of(client, member))["posted"] == 150


async def test_same_partner_txn_under_different_keys_is_credited_once(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    body = accrual_body(member["member"]["cardNumber"])
    responses = await asyncio.gather(*(accrue(client, shop["key"], body) for _ in range(12)))
    assert [r.status_code for r in responses].count(201) == 1
    for r in responses:
        if r.status_code != 201:
            assert_problem(r, 409, "duplicate_partner_transaction")
    # Even a different body with the same partnerTxnId, later on
    later = await accrue(client, shop["key"], body | {"amount": 99999})
    assert_problem(later, 409, "duplicate_partner_transaction")
    assert (await miles_of(client, member))["posted"] == 150


async def test_the_rate_in_force_at_the_purchase_applies(
        client: httpx.AsyncClient, admin: dict[str, str], member: dict[str, Any]) -> None:
    partner = await make_partner(client, admin, rates={})
    code, t = partner["code"], now()
    assert (await set_rate(client, admin, code, "retail", 10000,
                           t - timedelta(days=20))).status_code == 201
    # A change from 5 days ago on: closes the first rate there
    assert (await set_rate(client, admin, code, "retail", 30000,
                           t - timedelta(days=5))).status_code == 201
    overlap = await set_rate(client, admin, code, "retail", 50000, t - timedelta(days=10),
                             t - timedelta(days=7))
    assert_problem(overlap, 409, "earn_rate_overlap")
    bounded = await set_rate(client, admin, code, "retail", 50000, t + timedelta(days=1),
                             t + timedelta(days=3))
    assert_problem(bounded, 409, "earn_rate_overlap")  # would leave a gap after it
    bad = await set_rate(client, admin, code, "retail", 50000, t, t - timedelta(days=1))
    assert_problem(bad, 422, "invalid_earn_rate")
    key = await issue_key(client, admin, code)
    card = member["member"]["cardNumber"]

    async def miles_at(days_ago: float) -> httpx.Response:
        return await accrue(client, key, accrual_body(
            card, occurredAt=(t - timedelta(days=days_ago)).isoformat()))

    assert (await miles_at(10)).json()["miles"] == 100
    assert (await miles_at(1)).json()["miles"] == 300
    assert_problem(await miles_at(25), 422, "no_earn_rate")
    rates = (await client.get(f"/v1/admin/partners/{code}", headers=admin)).json()
    assert [(r["milesPerUnitBp"], r["effectiveTo"] is None)
            for r in rates["earnRates"]] == [(10000, False), (30000, True)]


async def test_zero_decimal_currency(client: httpx.AsyncClient, admin: dict[str, str],
                                     member: dict[str, Any]) -> None:
    partner = await make_partner(client, admin, currency="JPY", rates={"retail": 100})
    key = await issue_key(client, admin, partner["code"])
    response = await accrue(client, key, accrual_body(member["member"]["cardNumber"],
                                                      amount=15000, currency="JPY"))
    assert response.json()["miles"] == 150  # 0.01 mile per yen


async def test_partial_reversals_add_up_to_the_credit(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    credited = (await accrue(client, shop["key"],
                             accrual_body(member["member"]["cardNumber"]))).json()
    txn = credited["partnerTxnId"]
    taken = []
    for amount in (3333, 3333, None):
        response = await reverse(client, shop["key"], txn, amount)
        assert response.status_code == 201, response.text
        taken.append(response.json()["miles"])
    assert taken == [49, 50, 51] and sum(taken) == credited["miles"]
    assert response.json()["remainingAmount"] == 0
    assert_problem(await reverse(client, shop["key"], txn, 1), 409,
                   "reversal_exceeds_accrual")
    assert_problem(await reverse(client, shop["key"], txn), 409, "reversal_exceeds_accrual")
    assert (await miles_of(client, member))["posted"] == 0


async def test_concurrent_partial_reversals_never_exceed_the_credit(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any]) -> None:
    credited = (await accrue(client, shop["key"],
                             accrual_body(member["member"]["cardNumber"]))).json()
    txn = credited["partnerTxnId"]
    responses = await asyncio.gather(*(reverse(client, shop["key"], txn, 3000)
                                       for _ in range(8)))
    ok = [r for r in responses if r.status_code == 201]
    assert len(ok) == 3  # 3 times 30.00 of 100.00; the fourth would exceed it
    for r in responses:
        if r.status_code != 201:
            assert_problem(r, 409, "reversal_exceeds_accrual")
    assert sum(r.json()["miles"] for r in ok) == 150 * 9000 // 10000
    rest = await reverse(client, shop["key"], txn)
    assert rest.json()["amount"] == 1000
    assert (await miles_of(client, member))["posted"] == 0
    got = (await client.get(f"/v1/partner/accruals/{txn}", headers=bearer(shop["key"])))
    assert got.json()["reversedMiles"] == 150 and got.json()["reversedAmount"] == 10000


async def test_reversal_of_spent_miles_leaves_debt_that_blocks_redemption_until_repaid(
        client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
        in_ledger: LedgerRunner[Any]) -> None:
    card = member["member"]["cardNumber"]
    credited = (await accrue(client, shop["key"], accrual_body(card))).json()
    account_id = await account_of(in_ledger, member["member"]["id"])

    async def spend(ledger: Ledger) -> None:
        await ledger.debit(account_id, 100, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)

    await in_ledger(spend)
    response = await reverse(client, shop["key"], credited["partnerTxnId"])
    assert response.status_code == 201
    assert response.json()["miles"] == 150 and response.json()["balanceAfter"] == -100
    assert await debt_of(client, member) == (-100, 100)

    with pytest.raises(InsufficientMiles):
        await in_ledger(spend)
    # A later purchase repays the debt first: 150 earned, 100 owed, 50 to spend.
    await accrue(client, shop["key"], accrual_body(card))
    assert await debt_of(client, member) == (50, 0)


async def account_of(in_ledger: LedgerRunner[Any], member_id: int) -> int:
    async def load(ledger: Ledger) -> int:
        assert isinstance(ledger.session, AsyncSession)
        found = await MemberRepository(ledger.session).by_id(member_id)
        assert found is not None
        return found.account_id

    return int(await in_ledger(load))


async def test_a_partner_sees_only_its_own_accruals(
        client: httpx.AsyncClient, admin: dict[str, str], shop: dict[str, Any],
        member: dict[str, Any]) -> None:
    body = accrual_body(member["member"]["cardNumber"])
    assert (await accrue(client, shop["key"], body)).status_code == 201
    other = await make_partner(client, admin)
    other_key = await issue_key(client, admin, other["code"])
    txn = body["partnerTxnId"]
    assert_problem(await client.get(f"/v1/partner/accruals/{txn}",
                                    headers=bearer(other_key)), 404, "accrual_not_found")
    assert_problem(await reverse(client, other_key, txn), 404, "accrual_not_found")
    # The transaction id is unique per partner: the other partner may use it for its own.
    mine = await accrue(client, other_key, body)
    assert mine.status_code == 201, mine.text
    assert (await miles_of(client, member))["posted"] == 300
