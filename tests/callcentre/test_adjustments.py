"""Adjustments: limits per adjustment and per day (exactly at the limit passes, also under
concurrency), approval and rejection by a supervisor who is not the requester, two
supervisors approving at once, debits beyond the balance, reason codes, the audit trail."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.callcentre.support import adjust, audit, balances, fund, idem, new_member, staff_user
from tests.partners.support import assert_problem


@pytest.fixture
async def agent(db: Database, settings: Settings) -> dict[str, Any]:
    return await staff_user(db, settings, "agent")


@pytest.fixture
async def supervisor(db: Database, settings: Settings) -> dict[str, Any]:
    return await staff_user(db, settings, "supervisor")


@pytest.fixture
async def member(client: httpx.AsyncClient) -> dict[str, Any]:
    return await new_member(client)


async def entries_of(db: Database, adjustment_id: int) -> list[Any]:
    async def work(session: Any) -> list[Any]:
        return list((await session.execute(text(
            "SELECT id, kind, actor_type, actor_id FROM journal_entries "
            "WHERE source = 'adjustment' AND external_ref = :ref"),
            {"ref": str(adjustment_id)})).all())

    result: list[Any] = await db.transaction(work)
    return result


async def decide(client: httpx.AsyncClient, who: dict[str, Any], adjustment_id: int,
                 verb: str = "approve", comment: str = "Checked the booking"
                 ) -> httpx.Response:
    return await client.post(f"/v1/staff/adjustments/{adjustment_id}/{verb}",
                             json={"comment": comment}, headers=who["headers"] | idem())


async def test_within_the_limit_it_posts_at_once(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        db: Database, supervisor: dict[str, Any]) -> None:
    response = await adjust(client, agent["headers"], member["card"], 5000)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "posted" and body["pendingReason"] is None
    assert body["requestedBy"] == agent["id"] and body["entryId"] is not None
    assert (await balances(client, member))["MILES"] == 5000
    [entry] = await entries_of(db, body["id"])
    assert entry.kind == "adjustment" and entry.actor_type == "staff"
    assert entry.actor_id == str(agent["id"]) and entry.id == body["entryId"]

    [record] = await audit(client, supervisor["headers"], actor=f"staff:{agent['id']}",
                           action="adjustment.post")
    assert record["targetType"] == "member" and record["targetId"] == member["card"]
    assert record["before"] == {"unit": "MILES", "balance": 0}
    assert record["after"]["balance"] == 5000 and record["after"]["amount"] == 5000
    assert record["after"]["comment"] == "Delayed flight"


async def test_above_the_per_adjustment_limit_it_waits(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        supervisor: dict[str, Any], db: Database) -> None:
    response = await adjust(client, agent["headers"], member["card"], 5001)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending_approval"
    assert body["pendingReason"] == "per_adjustment_limit" and body["entryId"] is None
    assert (await balances(client, member))["MILES"] == 0
    assert await entries_of(db, body["id"]) == []

    queue = await client.get("/v1/staff/adjustments", params={"status": "pending_approval",
                                                              "limit": 100},
                             headers=supervisor["headers"])
    assert body["id"] in [a["id"] for a in queue.json()["items"]]

    approved = await decide(client, supervisor, body["id"])
    assert approved.status_code == 200, approved.text
    done = approved.json()
    assert done["status"] == "posted" and done["decidedBy"] == supervisor["id"]
    assert done["decisionComment"] == "Checked the booking"
    assert (await balances(client, member))["MILES"] == 5001
    [entry] = await entries_of(db, body["id"])
    assert entry.actor_id == str(supervisor["id"])
    [record] = await audit(client, supervisor["headers"], action="adjustment.approve",
                           target=f"member:{member['card']}")
    assert record["before"]["status"] == "pending_approval"
    assert record["after"]["status"] == "posted" and record["after"]["balance"] == 5001


async def test_the_daily_limit_counts_exactly(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any]) -> None:
    for _ in range(3):
        assert (await adjust(client, agent["headers"], member["card"], 5000)).json()[
            "status"] == "posted"
    # 15,000 used: 5,000 more is exactly the daily limit of 20,000.
    assert (await adjust(client, agent["headers"], member["card"], 5000)).json()[
        "status"] == "posted"
    over = (await adjust(client, agent["headers"], member["card"], 1)).json()
    assert over["status"] == "pending_approval" and over["pendingReason"] == "daily_limit"
    # Another unit has its own allowance.
    status = await adjust(client, agent["headers"], member["card"], 100, unit="STATUS_MILES")
    assert status.json()["status"] == "posted"
    assert await balances(client, member) == {"MILES": 20000, "STATUS_MILES": 100,
                                              "SEGMENTS": 0}


async def test_the_daily_limit_holds_under_concurrency(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any]) -> None:
    responses = await asyncio.gather(*[
        adjust(client, agent["headers"], member["card"], 3000) for _ in range(10)])
    statuses = sorted(r.json()["status"] for r in responses)
    # 6 x 3,000 = 18,000 fit in 20,000; a seventh would not.
    assert statuses == ["pending_approval"] * 4 + ["posted"] * 6
    assert (await balances(client, member))["MILES"] == 18000


async def test_nobody_approves_their_own(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        supervisor: dict[str, Any]) -> None:
    mine = (await adjust(client, supervisor["headers"], member["card"], 50001)).json()
    assert mine["status"] == "pending_approval"
    assert_problem(await decide(client, supervisor, mine["id"]), 403, "own_adjustment")
    assert_problem(await decide(client, supervisor, mine["id"], "reject"), 403,
                   "own_adjustment")
    # An agent may not approve at all, not even someone else's.
    assert_problem(await decide(client, agent, mine["id"]), 403, "forbidden")
    theirs = (await adjust(client, agent["headers"], member["card"], 9000)).json()
    assert_problem(await decide(client, agent, theirs["id"]), 403, "forbidden")
    assert (await balances(client, member))["MILES"] == 0


async def test_two_supervisors_approving_at_once_post_once(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        db: Database, settings: Settings) -> None:
    supervisors = [await staff_user(db, settings, "supervisor") for _ in range(4)]
    for _ in range(3):
        pending = (await adjust(client, agent["headers"], member["card"], 7000)).json()
        answers = await asyncio.gather(*[decide(client, s, pending["id"])
                                         for s in supervisors])
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409, 409, 409], [a.text for a in answers]
        for a in answers:
            if a.status_code == 409:
                assert a.json()["code"] == "adjustment_not_pending"
        assert len(await entries_of(db, pending["id"])) == 1
    assert (await balances(client, member))["MILES"] == 21000


async def test_rejected_adjustments_post_nothing(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        supervisor: dict[str, Any], db: Database) -> None:
    pending = (await adjust(client, agent["headers"], member["card"], 6000)).json()
    rejected = await decide(client, supervisor, pending["id"], "reject", "No evidence")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["decisionComment"] == "No evidence"
    assert_problem(await decide(client, supervisor, pending["id"]), 409,
                   "adjustment_not_pending")
    assert await entries_of(db, pending["id"]) == []
    assert (await balances(client, member))["MILES"] == 0
    [record] = await audit(client, supervisor["headers"], action="adjustment.reject",
                           target=member["card"])
    assert record["after"]["status"] == "rejected"


async def test_a_debit_beyond_the_balance_is_refused(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        supervisor: dict[str, Any], db: Database, system: SystemAccounts) -> None:
    await fund(db, system, member["card"], 1000)
    assert_problem(await adjust(client, agent["headers"], member["card"], 1001, "debit"),
                   409, "insufficient_miles")
    assert_problem(await adjust(client, agent["headers"], member["card"], 9000, "debit"),
                   409, "insufficient_miles")
    listed = await client.get("/v1/staff/adjustments", headers=agent["headers"])
    assert listed.json()["items"] == []
    debit = await adjust(client, agent["headers"], member["card"], 1000, "debit")
    assert debit.json()["status"] == "posted"
    assert (await balances(client, member))["MILES"] == 0

    # Approved later, when the miles have gone in the meantime: refused, still pending.
    await fund(db, system, member["card"], 8000)
    pending = (await adjust(client, agent["headers"], member["card"], 8000, "debit")).json()
    assert pending["status"] == "pending_approval"
    assert (await adjust(client, agent["headers"], member["card"], 100, "debit")).json()[
        "status"] == "posted"
    assert_problem(await decide(client, supervisor, pending["id"]), 409,
                   "insufficient_miles")
    again = await client.get(f"/v1/staff/adjustments/{pending['id']}",
                             headers=supervisor["headers"])
    assert again.json()["status"] == "pending_approval"


async def test_replayed_request_posts_once(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any]) -> None:
    headers = agent["headers"] | idem()
    body = {"direction": "credit", "amount": 300, "reasonCode": "GOODWILL",
            "comment": "Sorry"}
    url = f"/v1/staff/members/{member['card']}/adjustments"
    first, second = [await client.post(url, json=body, headers=headers) for _ in range(2)]
    assert first.json() == second.json()
    assert second.headers["Idempotency-Replayed"] == "true"
    assert (await balances(client, member))["MILES"] == 300


async def test_reason_codes_are_managed_by_admins(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        db: Database, settings: Settings) -> None:
    admin = await staff_user(db, settings, "admin")
    listed = await client.get("/v1/staff/reason-codes", headers=agent["headers"])
    assert {"GOODWILL", "MISSING_FLIGHT"} <= {r["code"] for r in listed.json()}
    code = "TEST_" + member["card"][-8:]
    assert_problem(await client.post("/v1/staff/reason-codes", headers=agent["headers"],
                                     json={"code": code, "description": "x"}), 403,
                   "forbidden")
    created = await client.post("/v1/staff/reason-codes", headers=admin["headers"],
                                json={"code": code, "description": "Test reason"})
    assert created.status_code == 201, created.text
    assert_problem(await client.post("/v1/staff/reason-codes", headers=admin["headers"],
                                     json={"code": code, "description": "again"}), 409,
                   "reason_code_exists")
    assert_problem(await client.post("/v1/staff/reason-codes", headers=admin["headers"],
                                     json={"code": "lower case", "description": "x"}), 422,
                   "validation_error")
    assert (await adjust(client, agent["headers"], member["card"], 10,
                         reasonCode=code)).status_code == 201
    off = await client.post(f"/v1/staff/reason-codes/{code}/deactivate",
                            headers=admin["headers"])
    assert off.status_code == 200 and off.json()["active"] is False
    assert_problem(await adjust(client, agent["headers"], member["card"], 10,
                                reasonCode=code), 409, "reason_code_inactive")
    assert_problem(await adjust(client, agent["headers"], member["card"], 10,
                                reasonCode="NO_SUCH_CODE"), 404, "reason_code_not_found")
    active = await client.get("/v1/staff/reason-codes", params={"active": "true"},
                              headers=agent["headers"])
    assert code not in {r["code"] for r in active.json()}
    [record] = await audit(client, admin["headers"], action="reason_code.deactivate",
                           target=f"reason_code:{code}")
    assert record["before"] == {"active": True} and record["after"] == {"active": False}


async def test_limits_are_configurable_per_role(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    admin = await staff_user(db, settings, "admin")
    listed = await client.get("/v1/staff/adjustment-limits", headers=admin["headers"])
    limits = {r["role"]: r for r in listed.json()}
    assert limits["agent"]["perAdjustment"] == 5000 and limits["agent"]["perDay"] == 20000
    assert limits["supervisor"]["perAdjustment"] > 5000
    agent = await staff_user(db, settings, "agent")
    assert_problem(await client.put("/v1/staff/adjustment-limits/agent",
                                    headers=agent["headers"],
                                    json={"perAdjustment": 1, "perDay": 1}), 403, "forbidden")
    same = await client.put("/v1/staff/adjustment-limits/agent", headers=admin["headers"],
                            json={"perAdjustment": 5000, "perDay": 20000})
    assert same.status_code == 200, same.text


async def test_bad_input_changes_nothing(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any]) -> None:
    for extra in ({"amount": 0}, {"amount": -5}, {"direction": "sideways"},
                  {"unit": "SEGMENTS"}, {"comment": ""}):
        body = {"direction": "credit", "amount": 10, "reasonCode": "GOODWILL",
                "comment": "x"} | extra
        response = await client.post(f"/v1/staff/members/{member['card']}/adjustments",
                                     json=body, headers=agent["headers"])
        assert_problem(response, 400 if response.status_code == 400 else 422,
                       response.json()["code"])
    assert_problem(await adjust(client, agent["headers"], "7999999999999999", 10), 404,
                   "member_not_found")
    assert (await balances(client, member))["MILES"] == 0


async def test_text_the_database_cannot_store_is_422_and_changes_nothing(
        client: httpx.AsyncClient, agent: dict[str, Any], member: dict[str, Any],
        db: Database, settings: Settings) -> None:
    # JSON strings may carry U+0000, which PostgreSQL text cannot hold; found by fuzzing.
    admin = await staff_user(db, settings, "admin")
    code = "NUL_" + member["card"][-8:]
    assert_problem(await client.post("/v1/staff/reason-codes", headers=admin["headers"],
                                     json={"code": code, "description": "bad\u0000text"}),
                   422, "unstorable_text")
    listed = await client.get("/v1/staff/reason-codes", headers=agent["headers"])
    assert code not in {r["code"] for r in listed.json()}

    key = idem()
    refused = await client.post(f"/v1/staff/members/{member['card']}/adjustments",
                                json={"direction": "credit", "amount": 700,
                                      "reasonCode": "GOODWILL", "comment": "x\u0000y"},
                                headers=agent["headers"] | key)
    assert_problem(refused, 422, "unstorable_text")
    assert (await balances(client, member))["MILES"] == 0
    # The refused request left no idempotency record: its key is still free.
    accepted = await client.post(f"/v1/staff/members/{member['card']}/adjustments",
                                 json={"direction": "credit", "amount": 700,
                                       "reasonCode": "GOODWILL", "comment": "fine"},
                                 headers=agent["headers"] | key)
    assert accepted.status_code == 201, accepted.text
    assert (await balances(client, member))["MILES"] == 700
