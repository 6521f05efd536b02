"""The head of a family pool spends its miles at a partner: a pool code opens the hold on the
pool's account; only the head may ask for one; a refund goes back to the pool."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.settings import Settings
from tests.family.support import M, fund, make_member, miles, problem
from tests.partners.support import admin_headers
from tests.redemption.support import redeeming_partner


async def pool_of(client: httpx.AsyncClient, db: Database, head: M, member: M) -> int:
    created = await client.post("/v1/me/family", headers=head.key())
    assert created.status_code == 201, created.text
    sent = await client.post("/v1/me/family/invitations", headers=head.key(),
                             json={"cardNumber": member.card})
    assert sent.status_code == 201, sent.text
    accepted = await client.post(f"/v1/me/family/invitations/{sent.json()['id']}/accept",
                                 headers=member.key())
    assert accepted.status_code == 200, accepted.text

    async def account(session: Any) -> int:
        return int((await session.execute(text(
            "SELECT account_id FROM family_pools WHERE head_id = :id AND dissolved_at IS NULL"),
            {"id": head.id})).scalar_one())

    return await db.transaction(account)


async def held(db: Database, system: SystemAccounts, account_id: int) -> int:
    async def work(session: Any) -> int:
        return next(b.held for b in await Ledger(session, system).balances(account_id)
                    if str(b.unit) == "MILES")

    return await db.transaction(work)


async def test_the_pool_head_spends_pool_miles_at_a_partner(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    head = await make_member(db, system, settings, first_name="Hana")
    ben = await make_member(db, system, settings, first_name="Ben")
    pool = await pool_of(client, db, head, ben)
    await fund(db, system, pool, 5000)
    await fund(db, system, head.account_id, 300)
    shop = await redeeming_partner(client, await admin_headers(db, settings))

    refused = await client.post("/v1/me/redemption-codes", json={"fromPool": True},
                                headers=ben.headers)
    problem(refused, 409, "not_pool_head")

    code = await client.post("/v1/me/redemption-codes", json={"fromPool": True},
                             headers=head.headers)
    assert code.status_code == 201, code.text
    partner = {"Authorization": f"Bearer {shop['key']}"}
    hold = await client.post("/v1/partner/holds", headers=partner | {
        "Idempotency-Key": uuid.uuid4().hex}, json={
        "cardNumber": head.card, "memberCode": code.json()["code"], "miles": 1000,
        "cashAmount": 500, "currency": "EUR", "orderReference": "POOL-1",
        "ttlSeconds": 600})
    assert hold.status_code == 201, hold.text
    assert await held(db, system, pool) == 1000
    assert await miles(db, system, head.account_id) == 300  # the head's own miles untouched

    captured = await client.post(f"/v1/partner/holds/{hold.json()['id']}/capture",
                                 headers=partner | {"Idempotency-Key": uuid.uuid4().hex},
                                 json={"miles": 600})
    assert captured.status_code == 201, captured.text
    assert (await miles(db, system, pool), await held(db, system, pool)) == (4400, 0)
    refunded = await client.post(
        f"/v1/partner/redemptions/{captured.json()['id']}/refunds",
        headers=partner | {"Idempotency-Key": uuid.uuid4().hex}, json={"miles": 600})
    assert refunded.status_code == 201, refunded.text
    assert await miles(db, system, pool) == 5000
