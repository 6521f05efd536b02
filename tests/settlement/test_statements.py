"""Partner statements: totals equal the clearing account's postings, JSON and CSV agree, a
closed month is served from its snapshot and never changes, partners see only their own."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from lms.settlement.jobs import close_statements
from lms.settlement.service import CLOSE_GRACE, Month, SettlementService
from lms.settlement.verify import verify_statements
from tests.factories import bearer
from tests.partners.support import admin_headers, assert_problem, now
from tests.settlement.support import (
    PRICE,
    VALUE,
    Shop,
    buy,
    clearing_sums,
    give_back,
    new_shop,
    redeem,
    refund,
)


@pytest.fixture
async def admin(db: Database, settings: Settings) -> dict[str, str]:
    return await admin_headers(db, settings)


def this_month() -> str:
    return str(Month.of(now()))


async def statement(client: httpx.AsyncClient, shop: Shop, month: str | None = None,
                    **params: str) -> dict[str, Any]:
    response = await client.get(f"/v1/partner/statements/{month or this_month()}",
                                headers=bearer(shop.key), params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


async def traffic(client: httpx.AsyncClient, db: Database, system: SystemAccounts,
                  shop: Shop) -> None:
    """150 + 150 miles issued, 60 returned; 100 of a 120-mile hold captured, 30 refunded."""
    await buy(client, shop, 10000, "T-1")
    await buy(client, shop, 10000, "T-2")
    await give_back(client, shop, "T-2", 4000)
    await redeem(db, system, shop, 120, 100, "ORDER-9")
    await refund(db, system, shop, 30, "ORDER-9")


async def close_now(db: Database, shop: Shop) -> bool:
    """Close this month as the job would once it is over (the clock moved past its end)."""
    month = Month.of(now())
    later = month.end + CLOSE_GRACE + timedelta(minutes=1)
    return await db.transaction(
        lambda s: SettlementService(s).close_month(shop.id, month, later))


async def statement_violations(db: Database, shop: Shop) -> list[str]:
    async with db.engine.connect() as conn:
        return [str(v) for v in await verify_statements(conn)
                if v.row.get("partner_id") == shop.id]


async def test_totals_equal_the_clearing_account(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await new_shop(client, admin, db)
    await traffic(client, db, system, shop)

    body = await statement(client, shop)
    sums = await clearing_sums(db, shop)
    assert sums == {"accrual": -300, "reversal": 60, "capture": 100, "refund": -30}
    assert body["issuedMiles"] == -(sums["accrual"] + sums["reversal"]) == 240
    assert body["redeemedMiles"] == sums["capture"] + sums["refund"] == 70
    assert body["partnerOwes"] == 240 * PRICE // 1000 == 288
    assert body["programmeOwes"] == 70 * VALUE // 1000 == 175
    assert body["net"] == 288 - 175
    assert body["status"] == "open" and body["closedAt"] is None
    assert body["currency"] == "EUR" and body["partnerCode"] == shop.partner["code"]
    assert {t["kind"]: t["clearingMiles"] for t in body["totalsByKind"]} == sums

    lines = body["lines"]
    assert [(ln["kind"], ln["side"], ln["miles"], ln["reference"]) for ln in lines] == [
        ("accrual", "issued", 150, "T-1"), ("accrual", "issued", 150, "T-2"),
        ("reversal", "issued", -60, "T-2"), ("capture", "redeemed", 100, "ORDER-9"),
        ("refund", "redeemed", -30, "ORDER-9")]
    assert [ln["amount"] for ln in lines] == [180, 180, -72, 250, -75]
    masked = "*" * (len(shop.card) - 4) + shop.card[-4:]
    assert {ln["cardNumber"] for ln in lines} == {masked}
    assert all(shop.card not in str(ln) for ln in lines)
    assert sorted(ln["entryId"] for ln in lines) == [ln["entryId"] for ln in lines]


async def test_csv_and_json_agree(client: httpx.AsyncClient, admin: dict[str, str],
                                  db: Database, system: SystemAccounts) -> None:
    shop = await new_shop(client, admin, db)
    await traffic(client, db, system, shop)
    body = await statement(client, shop)

    by_query = await client.get(f"/v1/partner/statements/{this_month()}",
                                params={"format": "csv"}, headers=bearer(shop.key))
    by_accept = await client.get(f"/v1/partner/statements/{this_month()}",
                                 headers=bearer(shop.key) | {"Accept": "text/csv"})
    for response in (by_query, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
    assert by_query.text == by_accept.text

    rows = list(csv.DictReader(io.StringIO(by_query.text)))
    lines = [r for r in rows if r["record"] == "line"]
    totals = {r["kind"]: r for r in rows if r["record"] == "total"}
    assert [(int(r["entry_id"]), r["kind"], r["side"], r["reference"], r["card_number"],
             int(r["miles"]), int(r["amount"])) for r in lines] == [
        (ln["entryId"], ln["kind"], ln["side"], ln["reference"], ln["cardNumber"],
         ln["miles"], ln["amount"]) for ln in body["lines"]]
    assert {r["month"] for r in rows} == {body["month"]}
    assert {r["status"] for r in rows} == {"open"}
    assert (int(totals["issued"]["miles"]), int(totals["issued"]["amount"])) == (
        body["issuedMiles"], body["partnerOwes"])
    assert (int(totals["redeemed"]["miles"]), int(totals["redeemed"]["amount"])) == (
        body["redeemedMiles"], body["programmeOwes"])
    assert int(totals["net"]["amount"]) == body["net"]


async def test_a_closed_month_is_served_from_its_snapshot_and_never_changes(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await new_shop(client, admin, db)
    await traffic(client, db, system, shop)
    live = await statement(client, shop)

    assert await close_now(db, shop) is True
    assert await close_now(db, shop) is False  # closing twice keeps the first snapshot
    closed = await statement(client, shop)
    assert closed["status"] == "closed" and closed["closedAt"] is not None
    assert {k: v for k, v in closed.items() if k not in ("status", "closedAt")} == \
        {k: v for k, v in live.items() if k not in ("status", "closedAt")}
    assert await statement_violations(db, shop) == []

    # Entries posted afterwards (here, by the test's moved clock, still "in" the month) and a
    # new contract price leave the closed statement as it was.
    await buy(client, shop, 50000, "T-LATE")
    await redeem(db, system, shop, 10, 10, "ORDER-LATE")
    assert await statement(client, shop) == closed
    # ... and the ledger check sees the copy no longer matches the month's postings.
    found = await statement_violations(db, shop)
    assert found and all("invariant 7" in v for v in found)
    assert any("kind=accrual" in v for v in found) and any("kind=capture" in v for v in found)


async def test_the_snapshot_refuses_update_and_delete(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await new_shop(client, admin, db)
    await buy(client, shop, 10000, "T-1")
    assert await close_now(db, shop)
    for statement_sql in (
            "UPDATE partner_statements SET issued_miles = 0 WHERE partner_id = :p",
            "DELETE FROM partner_statement_lines WHERE statement_id IN "
            "(SELECT id FROM partner_statements WHERE partner_id = :p)",
            "UPDATE partner_statement_totals SET miles = 0 WHERE statement_id IN "
            "(SELECT id FROM partner_statements WHERE partner_id = :p)"):
        async def tamper(session: AsyncSession, sql: str = statement_sql) -> None:
            await session.execute(text(sql), {"p": shop.id})
        with pytest.raises(DBAPIError, match="append-only"):
            await db.transaction(tamper)
    assert (await statement(client, shop))["issuedMiles"] == 150


async def test_a_partner_sees_only_its_own_statement(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    a = await new_shop(client, admin, db)
    b = await new_shop(client, admin, db)
    await traffic(client, db, system, a)

    theirs = await statement(client, b)
    assert theirs["partnerCode"] == b.partner["code"]
    assert theirs["lines"] == [] and theirs["issuedMiles"] == theirs["redeemedMiles"] == 0
    assert len((await statement(client, a))["lines"]) == 5

    accrue_only = await new_shop(client, admin, db, scopes=["accrue"])
    response = await client.get(f"/v1/partner/statements/{this_month()}",
                                headers=bearer(accrue_only.key))
    assert_problem(response, 403, "insufficient_scope")
    member = await client.get(f"/v1/partner/statements/{this_month()}",
                              headers=bearer(a.member["accessToken"]))
    assert_problem(member, 403, "insufficient_scope")


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "26-11", "2026-1", "november",
                                   "2026-11-01"])
async def test_a_malformed_month_is_a_problem(client: httpx.AsyncClient,
                                              admin: dict[str, str], db: Database,
                                              month: str) -> None:
    shop = await new_shop(client, admin, db)
    response = await client.get(f"/v1/partner/statements/{month}", headers=bearer(shop.key))
    assert_problem(response, 422, "invalid_month")


async def test_future_and_unclosed_past_months(client: httpx.AsyncClient,
                                               admin: dict[str, str], db: Database) -> None:
    shop = await new_shop(client, admin, db)
    future = str(Month.of(now()).next())
    assert_problem(await client.get(f"/v1/partner/statements/{future}",
                                    headers=bearer(shop.key)), 422, "month_in_future")
    past = await statement(client, shop, "2020-02")
    assert past["status"] == "open" and past["lines"] == []
    assert past["periodStart"].startswith("2020-02-01T00:00:00")
    assert past["periodEnd"].startswith("2020-03-01T00:00:00")


async def test_the_closing_job_closes_each_ended_month_once(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database,
        system: SystemAccounts) -> None:
    shop = await new_shop(client, admin, db)
    await buy(client, shop, 10000, f"T-{uuid.uuid4().hex[:8]}")
    month = Month.of(now())
    assert (shop.id, month) not in await close_statements(db)  # not over yet

    later = month.end + CLOSE_GRACE + timedelta(minutes=1)
    runs = await asyncio.gather(*(close_statements(db, now=later) for _ in range(3)))
    assert sum((shop.id, month) in run for run in runs) == 1
    assert (shop.id, month) not in await close_statements(db, now=later)

    async with db.engine.connect() as conn:
        events = (await conn.execute(text(
            "SELECT payload FROM outbox_events WHERE topic = 'statement.closed' "
            "AND (payload->>'partnerId')::bigint = :p"), {"p": shop.id})).scalars().all()
    assert len(events) == 1
    assert events[0] | {"statementId": 0} == {
        "partnerId": shop.id, "statementId": 0, "month": str(month), "currency": "EUR",
        "issuedMiles": 150, "partnerOwes": 180, "redeemedMiles": 0, "programmeOwes": 0,
        "net": 180}
    assert await statement_violations(db, shop) == []
