"""The signed-in member's profile, balance and statement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lms.accounts.repository import MemberRepository
from lms.accounts.service import encode_cursor
from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Unit
from tests.factories import TEST_ACTOR, bearer, register_member


async def account_of(db: Database, member_id: int) -> int:
    member = await db.transaction(lambda s: MemberRepository(s).by_id(member_id))
    assert member is not None
    return member.account_id


async def test_me(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    response = await client.get("/v1/me", headers=bearer(member["accessToken"]))
    assert response.status_code == 200
    assert response.json() == member["member"]


async def test_balance_of_a_new_member_is_zero(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    body = (await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))).json()
    assert body["cardNumber"] == member["member"]["cardNumber"]
    assert {b["unit"]: b["available"] for b in body["balances"]} == {
        "MILES": 0, "STATUS_MILES": 0, "SEGMENTS": 0}
    assert body["nextExpiring"] == []
    assert body["expiringIn90Days"] == 0


async def test_balance_shows_posted_held_available_and_expiring(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    member = await register_member(client)
    account = await account_of(db, member["member"]["id"])

    async def activity(ledger: Ledger) -> None:
        await ledger.credit(account, 1000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        await ledger.credit(account, 40, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            unit=Unit.STATUS_MILES)
        await ledger.create_hold(account, 300, actor=TEST_ACTOR,
                                 expires_at=datetime.now(UTC) + timedelta(hours=1))

    await in_ledger(activity)
    body = (await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))).json()
    by_unit = {b["unit"]: b for b in body["balances"]}
    assert by_unit["MILES"] == {"unit": "MILES", "posted": 1000, "held": 300,
                                "available": 700, "debt": 0}
    assert by_unit["STATUS_MILES"]["posted"] == 40
    assert [lot["miles"] for lot in body["nextExpiring"]] == [1000]
    assert datetime.fromisoformat(body["nextExpiring"][0]["expiresAt"]) > datetime.now(UTC)


async def test_balance_page_is_the_ledgers_reads_in_one_statement(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    """The one-statement balance read (lms.accounts.repository.BALANCE_PAGE) answers what the
    ledger's own reads answer: balances per unit, the next five open lots by expiry (a spent
    lot left out), the miles expiring within 90 days, debt after a clawback."""
    member = await register_member(client)
    account = await account_of(db, member["member"]["id"])
    now = datetime.now(UTC)
    days = (400, 10, 95, 30, 89, 200, 60, 5)

    async def activity(ledger: Ledger) -> None:
        for i, d in enumerate(days):
            await ledger.credit(account, 100 + i, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                                lot_expires_at=now + timedelta(days=d))
        await ledger.debit(account, 208, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        await ledger.credit(account, 7, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            unit=Unit.SEGMENTS)
        await ledger.create_hold(account, 250, actor=TEST_ACTOR,
                                 expires_at=now + timedelta(hours=1))

    await in_ledger(activity)

    async def expected(ledger: Ledger) -> dict[str, Any]:
        balances = await ledger.balances(account)
        lots = await ledger.open_lots(account, limit=5)
        return {
            "balances": {str(b.unit): (b.posted, b.held, b.available) for b in balances},
            "lots": [(r["remaining"], r["expires_at"]) for r in lots],
            "expiring": await ledger.expiring_between_now_and(account,
                                                              now + timedelta(days=90)),
        }

    want = await in_ledger(expected)
    body = (await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))).json()
    assert [b["unit"] for b in body["balances"]] == ["MILES", "STATUS_MILES", "SEGMENTS"]
    assert {b["unit"]: (b["posted"], b["held"], b["available"])
            for b in body["balances"]} == want["balances"]
    assert [(lot["miles"], datetime.fromisoformat(lot["expiresAt"]))
            for lot in body["nextExpiring"]] == want["lots"]
    assert len(want["lots"]) == 5 and want["expiring"] == 103 + 106 + 104
    assert body["expiringIn90Days"] == want["expiring"]

    async def clawback(ledger: Ledger) -> None:
        await ledger.debit(account, 2000, kind=EntryKind.ADJUSTMENT, actor=TEST_ACTOR,
                           debt_account=account)

    await in_ledger(clawback)
    body = (await client.get("/v1/me/balance", headers=bearer(member["accessToken"]))).json()
    miles = next(b for b in body["balances"] if b["unit"] == "MILES")
    assert miles["available"] < 0 and miles["debt"] == -miles["available"]


async def test_statement_pages_newest_first(client: httpx.AsyncClient, db: Database,
                                            in_ledger: Any) -> None:
    member = await register_member(client)
    headers = bearer(member["accessToken"])
    account = await account_of(db, member["member"]["id"])

    async def activity(ledger: Ledger) -> None:
        for i, miles in enumerate((100, 200, 300, 400)):
            await ledger.credit(account, miles, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                                description=f"Flight {i}", source="test",
                                external_ref=f"{account}-{i}")
        await ledger.debit(account, 150, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR,
                           description="Upgrade")

    await in_ledger(activity)
    lines: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/me/statement", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        lines += page["lines"]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [line["amount"] for line in lines] == [-150, 400, 300, 200, 100]
    assert [line["balanceAfter"] for line in lines] == [850, 1000, 600, 300, 100]
    assert [line["kind"] for line in lines] == ["redemption"] + ["accrual"] * 4
    assert lines[0]["description"] == "Upgrade"
    assert lines[1]["reference"] == f"test:{account}-3"
    assert lines[0]["reference"] is None
    assert all(line["unit"] == "MILES" and line["at"] for line in lines)
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids, reverse=True)


async def test_statement_of_another_unit(client: httpx.AsyncClient, db: Database,
                                         in_ledger: Any) -> None:
    member = await register_member(client)
    account = await account_of(db, member["member"]["id"])
    await in_ledger(lambda ledger: ledger.credit(account, 7, kind=EntryKind.ACCRUAL,
                                                 actor=TEST_ACTOR, unit=Unit.SEGMENTS))
    page = (await client.get("/v1/me/statement", params={"unit": "SEGMENTS"},
                             headers=bearer(member["accessToken"]))).json()
    assert [line["amount"] for line in page["lines"]] == [7]
    assert page["nextCursor"] is None


async def test_statement_shows_only_the_members_own_lines(client: httpx.AsyncClient, db: Database,
                                                          in_ledger: Any) -> None:
    rich = await register_member(client)
    poor = await register_member(client)
    account = await account_of(db, rich["member"]["id"])
    await in_ledger(lambda ledger: ledger.credit(account, 500, kind=EntryKind.ACCRUAL,
                                                 actor=TEST_ACTOR))
    page = (await client.get("/v1/me/statement", headers=bearer(poor["accessToken"]))).json()
    assert page == {"lines": [], "nextCursor": None}


async def test_bad_cursor_is_422(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    headers = bearer(member["accessToken"])
    for cursor in ("zzz", "", "!!!", encode_cursor(1)[:-2] + "@@", "eyJiZWZvcmUiOiAieCJ9",
                   "WzFd", "eyJiZWZvcmUiOi0xfQ"):
        response = await client.get("/v1/me/statement", params={"cursor": cursor},
                                    headers=headers)
        assert response.status_code == 422, cursor
        assert response.json()["code"] == "invalid_cursor", cursor


async def test_limit_is_bounded(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    for limit in (0, 201):
        response = await client.get("/v1/me/statement", params={"limit": limit},
                                    headers=bearer(member["accessToken"]))
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
