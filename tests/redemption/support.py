"""Helpers for the redemption tests: a redeeming partner, funded members, codes, calls."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.repository import MemberRepository
from lms.db import Database, RawConnection
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind
from tests.factories import bearer, register_member
from tests.partners.support import issue_key, make_partner


async def redeeming_partner(client: httpx.AsyncClient, admin: dict[str, str], *,
                            value: int = 1000, min_cash_bp: int = 0,
                            **overrides: Any) -> dict[str, Any]:
    """A shop whose contract values a mile at ``value`` milli-minor, with a redeem key."""
    partner = await make_partner(client, admin, rates={}, valuePerMileMilliMinor=value,
                                 minCashShareBp=min_cash_bp, **overrides)
    return {"partner": partner,
            "key": await issue_key(client, admin, partner["code"], ["redeem"])}


async def funded_member(client: httpx.AsyncClient, db: Database, system: SystemAccounts,
                        miles: int) -> dict[str, Any]:
    member = await register_member(client)

    async def work(session: AsyncSession) -> int:
        found = await MemberRepository(session).by_id(member["member"]["id"])
        assert found is not None
        if miles:
            await Ledger(session, system).credit(found.account_id, miles,
                                                 kind=EntryKind.ACCRUAL,
                                                 actor=Actor("system", "tests"))
        return found.account_id

    member["accountId"] = await db.transaction(work)
    member["card"] = member["member"]["cardNumber"]
    return member


async def new_code(client: httpx.AsyncClient, member: dict[str, Any],
                   partner_code: str | None = None) -> str:
    body = {} if partner_code is None else {"partnerCode": partner_code}
    response = await client.post("/v1/me/redemption-codes", json=body,
                                 headers=bearer(member["accessToken"]))
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


def hold_body(card: str, code: str, **overrides: Any) -> dict[str, Any]:
    return {"cardNumber": card, "memberCode": code, "miles": 1000, "cashAmount": 500,
            "currency": "EUR", "orderReference": f"O-{uuid.uuid4().hex[:12]}",
            "ttlSeconds": 600} | overrides


def idem(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    return bearer(key) | {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}


async def open_hold(client: httpx.AsyncClient, key: str, body: dict[str, Any],
                    idempotency_key: str | None = None) -> httpx.Response:
    return await client.post("/v1/partner/holds", json=body,
                             headers=idem(key, idempotency_key))


async def capture(client: httpx.AsyncClient, key: str, hold_id: int,
                  miles: int | None = None, idempotency_key: str | None = None
                  ) -> httpx.Response:
    body = {} if miles is None else {"miles": miles}
    return await client.post(f"/v1/partner/holds/{hold_id}/capture", json=body,
                             headers=idem(key, idempotency_key))


async def void(client: httpx.AsyncClient, key: str, hold_id: int,
               idempotency_key: str | None = None) -> httpx.Response:
    return await client.post(f"/v1/partner/holds/{hold_id}/void",
                             headers=idem(key, idempotency_key))


async def refund(client: httpx.AsyncClient, key: str, redemption_id: int,
                 miles: int | None = None, idempotency_key: str | None = None
                 ) -> httpx.Response:
    body = {} if miles is None else {"miles": miles}
    return await client.post(f"/v1/partner/redemptions/{redemption_id}/refunds", json=body,
                             headers=idem(key, idempotency_key))


async def miles_of(client: httpx.AsyncClient, member: dict[str, Any]) -> dict[str, int]:
    response = await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))
    assert response.status_code == 200, response.text
    [miles] = [b for b in response.json()["balances"] if b["unit"] == "MILES"]
    return {"posted": miles["posted"], "held": miles["held"],
            "available": miles["available"]}


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async def work(session: AsyncSession) -> Any:
        return (await session.execute(text(sql), params)).scalar()

    return await db.transaction(work)


async def hold_for(client: httpx.AsyncClient, shop: dict[str, Any], member: dict[str, Any],
                   **overrides: Any) -> dict[str, Any]:
    code = await new_code(client, member)
    response = await open_hold(client, shop["key"], hold_body(member["card"], code,
                                                              **overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def fetchrow(db: Database, sql: str, *args: Any) -> asyncpg.Record:
    async def run(conn: RawConnection) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
        assert row is not None
        return row

    result: asyncpg.Record = await db.autocommit(run)
    return result
