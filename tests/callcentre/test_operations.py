"""Reversals, locks and merges by staff, the 360° view and the audit log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lms.db import Database
from lms.ledger.errors import AccountClosed
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind, Unit
from lms.settings import Settings
from tests.callcentre.support import (
    account_of,
    add_flown_coupon,
    adjust,
    audit,
    balances,
    fund,
    idem,
    new_member,
    staff_user,
    ticket,
)
from tests.conftest import LedgerRunner
from tests.factories import TEST_ACTOR, bearer
from tests.partners.support import assert_problem


@pytest.fixture
async def agent(db: Database, settings: Settings) -> dict[str, Any]:
    return await staff_user(db, settings, "agent")


@pytest.fixture
async def supervisor(db: Database, settings: Settings) -> dict[str, Any]:
    return await staff_user(db, settings, "supervisor")


async def lots_of(db: Database, account_id: int) -> list[Any]:
    async def work(session: Any) -> list[Any]:
        return list((await session.execute(text(
            "SELECT remaining, expires_at FROM lots WHERE account_id = :a AND remaining > 0 "
            "ORDER BY expires_at"), {"a": account_id})).all())

    result: list[Any] = await db.transaction(work)
    return result


def merge(client: httpx.AsyncClient, who: dict[str, Any], card: str, into: str,
          key: dict[str, str] | None = None) -> Any:
    return client.post(f"/v1/staff/members/{card}/merge", headers=who["headers"] | (
        key or idem()), json={"intoCardNumber": into, "reason": "Same person, two cards"})


# -- reversal -------------------------------------------------------------------------------

async def test_a_supervisor_reverses_an_entry_once(
        client: httpx.AsyncClient, agent: dict[str, Any], supervisor: dict[str, Any],
        db: Database, system: SystemAccounts) -> None:
    member = await new_member(client)
    entry_id = await fund(db, system, member["card"], 2500)
    url = f"/v1/staff/entries/{entry_id}/reversal"
    assert_problem(await client.post(url, json={"reason": "Wrong member"},
                                     headers=agent["headers"]), 403, "forbidden")
    reversed_ = await client.post(url, json={"reason": "Wrong member"},
                                  headers=supervisor["headers"] | idem())
    assert reversed_.status_code == 201, reversed_.text
    assert reversed_.json()["reversesId"] == entry_id
    assert (await balances(client, member))["MILES"] == 0
    assert_problem(await client.post(url, json={"reason": "Again"},
                                     headers=supervisor["headers"] | idem()), 409,
                   "already_reversed")
    assert_problem(await client.post("/v1/staff/entries/999999999/reversal",
                                     json={"reason": "x"}, headers=supervisor["headers"]),
                   404, "entry_not_found")
    [record] = await audit(client, supervisor["headers"], action="entry.reverse",
                           target=f"member:{member['card']}")
    assert record["after"]["entryId"] == entry_id
    assert record["after"]["reversalEntryId"] == reversed_.json()["entryId"]


# -- lock and unlock ------------------------------------------------------------------------

async def test_lock_and_unlock(client: httpx.AsyncClient, agent: dict[str, Any],
                               supervisor: dict[str, Any]) -> None:
    member = await new_member(client)
    url = f"/v1/staff/members/{member['card']}"
    locked = await client.post(url + "/lock", json={"reason": "Suspected takeover"},
                               headers=agent["headers"] | idem())
    assert locked.status_code == 200, locked.text
    assert locked.json() == {"cardNumber": member["card"], "status": "locked",
                             "previousStatus": "active"}
    me = await client.get("/v1/me", headers=bearer(member["token"]))
    assert me.json()["status"] == "locked"
    # The redemption endpoint reads the status the call centre set.
    assert_problem(await client.post("/v1/me/redemption-codes", json={},
                                     headers=bearer(member["token"]) | idem()), 409,
                   "member_locked")
    assert_problem(await client.post(url + "/lock", json={"reason": "again"},
                                     headers=agent["headers"]), 409, "member_not_active")
    [record] = await audit(client, supervisor["headers"], action="member.lock",
                           target=f"member:{member['card']}")
    assert record["before"] == {"status": "active"}
    assert record["after"] == {"status": "locked", "reason": "Suspected takeover"}
    assert record["actorId"] == str(agent["id"]) and record["actorRole"] == "agent"

    # Staff can still fix the balance of a locked member.
    assert (await adjust(client, agent["headers"], member["card"], 10)).json()[
        "status"] == "posted"
    unlocked = await client.post(url + "/unlock", json={"reason": "Verified by phone"},
                                 headers=agent["headers"])
    assert unlocked.json()["status"] == "active"
    assert_problem(await client.post(url + "/unlock", json={"reason": "again"},
                                     headers=agent["headers"]), 409, "member_not_locked")
    assert (await client.get("/v1/me", headers=bearer(member["token"]))).json()[
        "status"] == "active"
    code = await client.post("/v1/me/redemption-codes", json={},
                             headers=bearer(member["token"]) | idem())
    assert code.status_code == 201, code.text


# -- merge ----------------------------------------------------------------------------------

async def test_merge_moves_every_balance_once_and_closes_the_duplicate(
        client: httpx.AsyncClient, supervisor: dict[str, Any], agent: dict[str, Any],
        db: Database, system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    duplicate, target = await new_member(client), await new_member(client)
    dup_account = await account_of(db, duplicate["card"])
    soon, late = (datetime.now(UTC) + timedelta(days=d) for d in (30, 700))
    for miles, expiry in ((1200, soon), (800, late)):
        async def credit(ledger: Ledger, m: int = miles, e: datetime = expiry) -> Any:
            return await ledger.credit(dup_account, m, kind=EntryKind.ACCRUAL,
                                       actor=TEST_ACTOR, lot_expires_at=e)

        await in_ledger(credit)
    await fund(db, system, duplicate["card"], 3000, Unit.STATUS_MILES)
    await fund(db, system, target["card"], 500)
    number = ticket()
    await add_flown_coupon(db, duplicate["id"], number)

    assert_problem(await merge(client, agent, duplicate["card"], target["card"]), 403,
                   "forbidden")
    key = idem()
    response = await merge(client, supervisor, duplicate["card"], target["card"], key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "closed" and body["intoCardNumber"] == target["card"]
    assert body["moved"] == [{"unit": "MILES", "amount": 2000},
                             {"unit": "STATUS_MILES", "amount": 3000}]
    assert datetime.fromisoformat(body["lotExpiresAt"]) == late
    assert await balances(client, target) == {"MILES": 2500, "STATUS_MILES": 3000,
                                              "SEGMENTS": 0}
    target_lots = await lots_of(db, await account_of(db, target["card"]))
    assert (2000, late) in [(r.remaining, r.expires_at) for r in target_lots]
    assert await lots_of(db, dup_account) == []

    async def merge_entries(session: Any) -> int:
        return int((await session.execute(text(
            "SELECT count(*) FROM journal_entries WHERE kind = 'merge' "
            "AND external_ref = :c"), {"c": duplicate["card"]})).scalar_one())

    assert await db.transaction(merge_entries) == 1

    # The same request replayed, and the same merge asked again: nothing moves twice.
    replay = await merge(client, supervisor, duplicate["card"], target["card"], key)
    assert replay.json() == body and replay.headers["Idempotency-Replayed"] == "true"
    again = await merge(client, supervisor, duplicate["card"], target["card"])
    assert again.status_code == 200, again.text
    assert again.json()["entryId"] == body["entryId"] and again.json()["moved"] == body["moved"]
    assert await db.transaction(merge_entries) == 1
    assert (await balances(client, target))["MILES"] == 2500

    # The duplicate is closed: signed out, cannot sign in, cannot earn.
    assert_problem(await client.get("/v1/me", headers=bearer(duplicate["token"])), 401,
                   "unauthorized")
    sign_in = await client.post("/v1/auth/token", json={
        "email": duplicate["member"]["email"], "password": duplicate["password"]})
    assert sign_in.status_code == 403, sign_in.text
    with pytest.raises(AccountClosed):
        await in_ledger(lambda ledger: ledger.credit(dup_account, 1, kind=EntryKind.ACCRUAL,
                                                     actor=TEST_ACTOR))
    assert_problem(await adjust(client, agent["headers"], duplicate["card"], 10), 409,
                   "member_closed")

    # The target's 360° view shows the duplicate's history.
    view = (await client.get(f"/v1/staff/members/{target['card']}",
                             headers=agent["headers"])).json()
    assert view["profile"]["mergedFrom"] == [duplicate["card"]]
    assert [f["ticketNumber"] for f in view["flights"]] == [number]
    assert view["flights"][0]["cardNumber"] == duplicate["card"]
    assert any(a["action"] == "member.merge" for a in view["auditTrail"])
    dup_view = (await client.get(f"/v1/staff/members/{duplicate['card']}",
                                 headers=agent["headers"])).json()
    assert dup_view["profile"]["status"] == "closed"
    assert dup_view["profile"]["mergedIntoCardNumber"] == target["card"]
    assert all(b["posted"] == 0 for b in dup_view["balances"])

    [record] = await audit(client, supervisor["headers"], action="member.merge",
                           target=f"member:{duplicate['card']}")
    assert record["before"]["status"] == "active"
    assert record["before"]["balances"]["MILES"] == 2000
    assert record["after"]["mergedInto"] == target["card"]


async def test_merge_is_refused_while_the_duplicate_has_pending_holds(
        client: httpx.AsyncClient, supervisor: dict[str, Any], db: Database,
        system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    duplicate, target = await new_member(client), await new_member(client)
    await fund(db, system, duplicate["card"], 1000)
    account = await account_of(db, duplicate["card"])
    hold = await in_ledger(lambda ledger: ledger.create_hold(
        account, 400, actor=TEST_ACTOR, expires_at=datetime.now(UTC) + timedelta(hours=1)))
    body = assert_problem(await merge(client, supervisor, duplicate["card"], target["card"]),
                          409, "merge_pending_holds")
    assert body["pendingHolds"] == 1
    assert (await balances(client, duplicate))["MILES"] == 1000
    assert (await client.get("/v1/me", headers=bearer(duplicate["token"]))).json()[
        "status"] == "active"

    await in_ledger(lambda ledger: ledger.void(hold.id, actor=TEST_ACTOR))
    # A hold already past its expiry is released by the merge itself.
    await in_ledger(lambda ledger: ledger.create_hold(
        account, 300, actor=TEST_ACTOR, expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    merged = await merge(client, supervisor, duplicate["card"], target["card"])
    assert merged.status_code == 200, merged.text
    assert (await balances(client, target))["MILES"] == 1000


async def test_merges_that_make_no_sense_are_refused(
        client: httpx.AsyncClient, supervisor: dict[str, Any], db: Database,
        system: SystemAccounts) -> None:
    a, b, c = [await new_member(client) for _ in range(3)]
    assert_problem(await merge(client, supervisor, a["card"], a["card"]), 409,
                   "merge_into_self")
    assert_problem(await merge(client, supervisor, a["card"], "7999999999999999"), 404,
                   "member_not_found")
    assert (await merge(client, supervisor, b["card"], c["card"])).status_code == 200
    assert_problem(await merge(client, supervisor, a["card"], b["card"]), 409,
                   "merge_target_closed")
    assert_problem(await merge(client, supervisor, b["card"], a["card"]), 409,
                   "member_merged_elsewhere")


async def test_crossed_merges_at_once_merge_one_way(
        client: httpx.AsyncClient, supervisor: dict[str, Any], db: Database,
        system: SystemAccounts) -> None:
    a, b = await new_member(client), await new_member(client)
    await fund(db, system, a["card"], 100)
    await fund(db, system, b["card"], 200)
    answers = await asyncio.gather(merge(client, supervisor, a["card"], b["card"]),
                                   merge(client, supervisor, b["card"], a["card"]))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    open_ = [m for m in (a, b)
             if (await client.get("/v1/me", headers=bearer(m["token"]))).status_code == 200]
    assert len(open_) == 1
    assert (await balances(client, open_[0]))["MILES"] == 300


# -- the 360° view and the audit log ------------------------------------------------------

async def test_the_360_view(client: httpx.AsyncClient, agent: dict[str, Any],
                            supervisor: dict[str, Any], db: Database,
                            system: SystemAccounts, settings: Settings,
                            in_ledger: LedgerRunner[Any]) -> None:
    member = await new_member(client)
    await fund(db, system, member["card"], 4000)
    account = await account_of(db, member["card"])
    await in_ledger(lambda ledger: ledger.create_hold(
        account, 500, actor=TEST_ACTOR, expires_at=datetime.now(UTC) + timedelta(hours=1)))
    await adjust(client, agent["headers"], member["card"], 100)
    number = ticket()
    await client.post("/v1/me/claims", headers=bearer(member["token"]), json={
        "ticketNumber": number, "flightNumber": "LM118", "flightDate": "2026-10-02"})

    response = await client.get(f"/v1/staff/members/{member['card']}",
                                headers=agent["headers"])
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["profile"]["email"] == member["member"]["email"]
    assert view["profile"]["phone"] == member["member"]["phone"]
    miles = next(b for b in view["balances"] if b["unit"] == "MILES")
    assert miles == {"unit": "MILES", "posted": 4100, "held": 500, "available": 3600,
                     "debt": 0}
    assert sum(lot["remaining"] for lot in view["lots"]) == 4100
    assert [h["status"] for h in view["holds"]] == ["pending"]
    assert [line["amount"] for line in view["statement"]["lines"]] == [100, 4000]
    assert [c["claim"]["ticketNumber"] for c in view["claims"]] == [number]
    assert [a["amount"] for a in view["adjustments"]] == [100]
    assert {"adjustment.post"} <= {a["action"] for a in view["auditTrail"]}
    assert view["familyPool"] == {"role": None, "pool": None, "invitationsReceived": []}
    assert view["purchases"] == []

    statement = await client.get(f"/v1/staff/members/{member['card']}/statement",
                                 params={"limit": 1}, headers=agent["headers"])
    assert len(statement.json()["lines"]) == 1 and statement.json()["nextCursor"]

    views = await audit(client, supervisor["headers"], action="member.view",
                        target=f"member:{member['card']}")
    assert [v["actorId"] for v in views] == [str(agent["id"])]
    assert_problem(await client.get(f"/v1/staff/members/{member['card']}",
                                    headers=bearer(member["token"])), 403, "forbidden")
    assert_problem(await client.get("/v1/staff/members/7999999999999999",
                                    headers=agent["headers"]), 404, "member_not_found")


async def test_the_audit_log_is_for_supervisors_and_filters(
        client: httpx.AsyncClient, agent: dict[str, Any], supervisor: dict[str, Any],
        db: Database, settings: Settings) -> None:
    member = await new_member(client)
    before = datetime.now(UTC)
    await adjust(client, agent["headers"], member["card"], 10)
    await client.post(f"/v1/staff/members/{member['card']}/lock", json={"reason": "x"},
                      headers=agent["headers"])
    assert_problem(await client.get("/v1/staff/audit", headers=agent["headers"]), 403,
                   "forbidden")
    marketer = await staff_user(db, settings, "marketer")
    assert_problem(await client.get("/v1/staff/audit", headers=marketer["headers"]), 403,
                   "forbidden")
    mine = await audit(client, supervisor["headers"], actor=f"staff:{agent['id']}")
    assert [r["action"] for r in mine] == ["member.lock", "adjustment.post"]
    assert await audit(client, supervisor["headers"], actor=str(agent["id"]),
                       target=member["card"], **{"from": before.isoformat()}) == mine
    assert await audit(client, supervisor["headers"], actor=f"staff:{agent['id']}",
                       to=before.isoformat()) == []
    page = await client.get("/v1/staff/audit", params={"actor": f"staff:{agent['id']}",
                                                       "limit": 1},
                            headers=supervisor["headers"])
    second = await client.get("/v1/staff/audit", params={
        "actor": f"staff:{agent['id']}", "limit": 1, "cursor": page.json()["nextCursor"]},
        headers=supervisor["headers"])
    assert [r["action"] for r in page.json()["items"] + second.json()["items"]] == \
        ["member.lock", "adjustment.post"]

    # Append-only: the database refuses to change the record.
    async def tamper(session: Any) -> None:
        await session.execute(text("UPDATE audit_log SET action = 'x' WHERE id = :id"),
                              {"id": mine[0]["id"]})

    with pytest.raises(DBAPIError, match="the table is append-only"):
        await db.transaction(tamper)


async def test_a_duplicate_in_debt_passes_its_debt_on(
        client: httpx.AsyncClient, supervisor: dict[str, Any], agent: dict[str, Any],
        db: Database, system: SystemAccounts, in_ledger: LedgerRunner[Any]) -> None:
    duplicate, target = await new_member(client), await new_member(client)
    entry_id = await fund(db, system, duplicate["card"], 1000)
    await adjust(client, agent["headers"], duplicate["card"], 600, "debit")
    await in_ledger(lambda ledger: ledger.reverse(entry_id, actor=TEST_ACTOR,
                                                  reason="clawback", clawback=True))
    assert (await balances(client, duplicate))["MILES"] == -600
    await fund(db, system, target["card"], 200)
    merged = await merge(client, supervisor, duplicate["card"], target["card"])
    assert merged.status_code == 200, merged.text
    assert merged.json()["moved"] == [{"unit": "MILES", "amount": -600}]
    assert (await balances(client, target))["MILES"] == -400


async def test_merge_is_refused_while_the_duplicate_is_in_a_family_pool(
        client: httpx.AsyncClient, supervisor: dict[str, Any]) -> None:
    duplicate, target = await new_member(client), await new_member(client)
    created = await client.post("/v1/me/family", headers=bearer(duplicate["token"]) | idem())
    assert created.status_code == 201, created.text
    view = await client.get(f"/v1/staff/members/{duplicate['card']}",
                            headers=supervisor["headers"])
    assert view.status_code == 200, view.text
    family = view.json()["familyPool"]
    assert family["role"] == "head" and family["pool"]["members"][0]["cardNumber"] == \
        duplicate["card"]
    assert_problem(await merge(client, supervisor, duplicate["card"], target["card"]),
                   409, "merge_in_family_pool")
    left = await client.post("/v1/me/family/dissolve",
                             headers=bearer(duplicate["token"]) | idem())
    assert left.status_code == 200, left.text
    merged = await merge(client, supervisor, duplicate["card"], target["card"])
    assert merged.status_code == 200, merged.text

