"""Helpers for the partner tests: an admin token, partners and keys through the admin API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.db import Database
from lms.settings import Settings
from tests.factories import bearer, unique_email

PROBLEM = "application/problem+json"


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def probe(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """A cheap authenticated partner call (an unknown accrual: 404 once authenticated)."""
    return await client.get("/v1/partner/accruals/no-such-txn", headers=bearer(key))


async def clear_of_the_minute_edge(seconds: float = 5.0) -> None:
    """Wait, if need be, until the current one-minute rate-limit window has ``seconds`` left,
    so that a test's requests all fall in one window."""
    moment = now()
    left = 60 - moment.second - moment.microsecond / 1e6
    if left < seconds:
        await asyncio.sleep(left + 0.1)


async def admin_headers(db: Database, settings: Settings) -> dict[str, str]:
    async def work(session: Any) -> str:
        auth = AuthService(session, settings)
        staff_id = await auth.create_staff(email=unique_email("admin"), name="Ada Admin",
                                           role="admin", password="admin password 123")
        return (await auth.issue_token(Principal("staff", staff_id, Role.ADMIN))).token

    return bearer(await db.transaction(work))


async def clearing_posted(db: Database, partner_id: int) -> int:
    """The MILES posted on a partner's clearing account: the sum over all its shards."""
    async def work(session: AsyncSession) -> int:
        return int((await session.execute(text(
            "SELECT COALESCE(sum(b.posted), 0) FROM balances b JOIN accounts a "
            "ON a.id = b.account_id WHERE a.kind = 'system' AND a.code = :code "
            "AND b.unit = 'MILES'"), {"code": f"partner:{partner_id}"})).scalar_one())

    return await db.transaction(work)


def unique_code(prefix: str = "shop") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_partner(client: httpx.AsyncClient, admin: dict[str, str], *,
                       currency: str = "EUR", rates: dict[str, int] | None = None,
                       **overrides: Any) -> dict[str, Any]:
    """A partner with earn rates (basis points of a mile per currency unit) in force since
    30 days ago; default: 1.5 miles per EUR in ``retail``."""
    body = {"code": unique_code(), "name": "Acme Shop", "kind": "shop",
            "currency": currency, "pricePerMileMilliMinor": 1200} | overrides
    response = await client.post("/v1/admin/partners", json=body, headers=admin)
    assert response.status_code == 201, response.text
    partner: dict[str, Any] = response.json()
    for category, bp in (rates if rates is not None else {"retail": 15000}).items():
        await set_rate(client, admin, partner["code"], category, bp,
                       now() - timedelta(days=30))
    return partner


async def set_rate(client: httpx.AsyncClient, admin: dict[str, str], code: str,
                   category: str, bp: int, start: datetime, end: datetime | None = None
                   ) -> httpx.Response:
    body: dict[str, Any] = {"category": category, "milesPerUnitBp": bp,
                            "effectiveFrom": iso(start)}
    if end is not None:
        body["effectiveTo"] = iso(end)
    return await client.post(f"/v1/admin/partners/{code}/earn-rates", json=body,
                             headers=admin)


async def issue_key(client: httpx.AsyncClient, admin: dict[str, str], code: str,
                    scopes: list[str] | None = None, **options: Any) -> str:
    response = await client.post(f"/v1/admin/partners/{code}/api-keys", headers=admin,
                                 json={"scopes": scopes or ["accrue"]} | options)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def accrual_body(card: str, **overrides: Any) -> dict[str, Any]:
    return {"cardNumber": card, "partnerTxnId": f"T-{uuid.uuid4().hex[:16]}",
            "amount": 10000, "currency": "EUR", "category": "retail",
            "occurredAt": iso(now() - timedelta(hours=1))} | overrides


async def accrue(client: httpx.AsyncClient, key: str, body: dict[str, Any],
                 idempotency_key: str | None = None) -> httpx.Response:
    headers = bearer(key) | {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    return await client.post("/v1/partner/accruals", json=body, headers=headers)


async def reverse(client: httpx.AsyncClient, key: str, txn: str, amount: int | None = None,
                  idempotency_key: str | None = None) -> httpx.Response:
    headers = bearer(key) | {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    body = {} if amount is None else {"amount": amount}
    return await client.post(f"/v1/partner/accruals/{txn}/reversal", json=body,
                             headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body
