"""Missing-flight claims: the 180-day window, matching the coupon when it arrives (from the
accrual code or the beat job), rejection when the window closes, bad input."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from lms.claims.schemas import ClaimRequest
from lms.claims.service import ClaimService
from lms.claims.tasks import resolve_claims
from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Leg, PostedEntry, SystemAccount, Unit
from tests.factories import TEST_ACTOR, bearer
from tests.tiers.support import events, new_member

_tickets = itertools.count(int(time.time() * 1000) % 10**9)


def ticket() -> str:
    return f"0740{next(_tickets):09d}"


def today() -> date:
    return datetime.now(UTC).date()


def body(ticket_number: str, flight: str = "LM123", days_ago: int = 10) -> dict[str, Any]:
    return {"ticketNumber": ticket_number, "flightNumber": flight,
            "flightDate": (today() - timedelta(days=days_ago)).isoformat()}


async def credit_coupon(in_ledger: Any, account: int, ticket_number: str, coupon: int,
                        flight: str, flown: date) -> PostedEntry:
    """What the flight feed posts for a coupon: one entry, three units."""

    async def post(ledger: Ledger) -> PostedEntry:
        issuance = ledger.system.pick(SystemAccount.ISSUANCE)
        qualification = ledger.system.pick(SystemAccount.QUALIFICATION)
        return await ledger.post(
            kind=EntryKind.ACCRUAL, actor=TEST_ACTOR, source="flight",
            external_ref=f"{ticket_number}/{coupon}",
            effective_at=datetime(flown.year, flown.month, flown.day, tzinfo=UTC),
            details={"ticket": ticket_number, "coupon": coupon, "flight": flight},
            legs=[Leg(issuance, Unit.MILES, -1000), Leg(account, Unit.MILES, 1000),
                  Leg(qualification, Unit.STATUS_MILES, -1000),
                  Leg(account, Unit.STATUS_MILES, 1000),
                  Leg(qualification, Unit.SEGMENTS, -1), Leg(account, Unit.SEGMENTS, 1)])

    result: PostedEntry = await in_ledger(post)
    return result


async def claim_count(db: Database, member_id: int) -> int:
    async def count(session: Any) -> int:
        value: int = (await session.execute(text(
            "SELECT count(*) FROM claims WHERE member_id = :id"), {"id": member_id})
        ).scalar_one()
        return value

    result: int = await db.transaction(count)
    return result


async def claims_of(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/me/claims", headers=bearer(token))
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()["claims"]
    return result


async def test_claim_within_the_window_waits(client: httpx.AsyncClient, db: Database) -> None:
    m = await new_member(client, db)
    t = ticket()
    response = await client.post("/v1/me/claims", json=body(t, days_ago=180),
                                 headers=bearer(m["accessToken"]))
    assert response.status_code == 201, response.text
    claim = response.json()
    assert (claim["status"], claim["ticketNumber"], claim["entryId"]) == ("pending", t, None)
    assert [c["id"] for c in await claims_of(client, m["accessToken"])] == [claim["id"]]


async def test_claim_past_180_days_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    m = await new_member(client, db)
    response = await client.post("/v1/me/claims", json=body(ticket(), days_ago=181),
                                 headers=bearer(m["accessToken"]))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "claim_window_closed"
    assert await claim_count(db, m["id"]) == 0


async def test_bad_input_is_a_problem_and_changes_nothing(
        client: httpx.AsyncClient, db: Database) -> None:
    m = await new_member(client, db)
    for bad in (body("12345"), body(ticket(), flight="not a flight"),
                body(ticket()) | {"flightDate": "yesterday"},
                body(ticket()) | {"extra": 1}, {"ticketNumber": ticket()},
                body(ticket(), days_ago=-5)):
        response = await client.post("/v1/me/claims", json=bad,
                                     headers=bearer(m["accessToken"]))
        assert 400 <= response.status_code < 500, (bad, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await claim_count(db, m["id"]) == 0
    assert (await client.post("/v1/me/claims", json=body(ticket()))).status_code == 401


async def test_the_same_flight_is_claimed_once(client: httpx.AsyncClient, db: Database) -> None:
    m = await new_member(client, db)
    claim = body(ticket())
    first = await client.post("/v1/me/claims", json=claim, headers=bearer(m["accessToken"]))
    second = await client.post("/v1/me/claims", json=claim, headers=bearer(m["accessToken"]))
    assert (first.status_code, second.status_code) == (201, 409)
    assert second.json()["code"] == "claim_exists"


async def test_matched_by_the_beat_job_when_the_coupon_arrives(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    t = ticket()
    claimed = (await client.post("/v1/me/claims", json=body(t, flight="LM123", days_ago=3),
                                 headers=bearer(m["accessToken"]))).json()
    # Coupon 1 of the same ticket is another flight: it does not answer the claim.
    await credit_coupon(in_ledger, m["accountId"], t, 1, "LM122", today() - timedelta(days=4))
    await resolve_claims(db)
    assert (await claims_of(client, m["accessToken"]))[0]["status"] == "pending"
    entry = await credit_coupon(in_ledger, m["accountId"], t, 2, "LM123",
                                today() - timedelta(days=3))
    run = await resolve_claims(db)
    assert run.credited >= 1
    [claim] = await claims_of(client, m["accessToken"])
    assert (claim["id"], claim["status"], claim["entryId"]) == (claimed["id"], "credited",
                                                               entry.id)
    assert [e["claimId"] for e in await events(db, "claim.credited", "memberId", m["id"])] == [
        claimed["id"]]
    # Idempotent: a second run finds nothing of this member's to do.
    await resolve_claims(db)
    assert await claims_of(client, m["accessToken"]) == [claim]


async def test_matched_by_the_accrual_code(client: httpx.AsyncClient, db: Database,
                                           in_ledger: Any) -> None:
    m = await new_member(client, db)
    t = ticket()
    await client.post("/v1/me/claims", json=body(t, days_ago=1),
                      headers=bearer(m["accessToken"]))
    entry = await credit_coupon(in_ledger, m["accountId"], t, 1, "LM123",
                                today() - timedelta(days=1))
    matched = await db.transaction(lambda s: ClaimService(s).match_credited(
        t, account_id=m["accountId"], entry_id=entry.id))
    assert matched == 1
    assert (await claims_of(client, m["accessToken"]))[0]["status"] == "credited"


async def test_a_flight_already_credited_is_answered_at_once(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    t = ticket()
    await credit_coupon(in_ledger, m["accountId"], t, 1, "LM123", today() - timedelta(days=2))
    response = await client.post("/v1/me/claims", json=body(t, days_ago=2),
                                 headers=bearer(m["accessToken"]))
    assert response.json()["status"] == "credited"


async def test_another_members_coupon_does_not_answer(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m, other = await new_member(client, db), await new_member(client, db)
    t = ticket()
    await client.post("/v1/me/claims", json=body(t, days_ago=2),
                      headers=bearer(m["accessToken"]))
    await credit_coupon(in_ledger, other["accountId"], t, 1, "LM123",
                        today() - timedelta(days=2))
    await resolve_claims(db)
    assert (await claims_of(client, m["accessToken"]))[0]["status"] == "pending"


async def test_rejected_when_the_window_closes(client: httpx.AsyncClient, db: Database) -> None:
    m = await new_member(client, db)
    flown = today() - timedelta(days=170)
    claim = await db.transaction(lambda s: ClaimService(s).submit(m["id"], ClaimRequest(
        ticket_number=ticket(), flight_number="LM9", flight_date=flown)))
    await resolve_claims(db, on=flown + timedelta(days=180))
    assert (await claims_of(client, m["accessToken"]))[0]["status"] == "pending"
    await resolve_claims(db, on=flown + timedelta(days=181))
    [rejected] = await claims_of(client, m["accessToken"])
    assert (rejected["id"], rejected["status"], rejected["reason"]) == (
        claim.id, "rejected", "no_matching_flight")
    assert len(await events(db, "claim.rejected", "memberId", m["id"])) == 1


async def test_flight_numbers_compare_without_leading_zeros(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    t = ticket()
    claim = (await client.post("/v1/me/claims", json=body(t, flight="lm0123", days_ago=2),
                               headers=bearer(m["accessToken"]))).json()
    assert (claim["flightNumber"], claim["status"]) == ("LM123", "pending")
    await credit_coupon(in_ledger, m["accountId"], t, 1, "LM0123", today() - timedelta(days=2))
    await resolve_claims(db)
    assert (await claims_of(client, m["accessToken"]))[0]["status"] == "credited"
