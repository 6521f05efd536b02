"""Tiers of hand-computed members, from the ledger's postings: reevaluate, the nightly pass,
history, events and GET /v1/me/tier."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lms.db import Database
from lms.ledger.service import Ledger, add_months
from lms.tiers.jobs import tiers_nightly
from lms.tiers.policy import Change
from lms.tiers.service import TierService
from tests.factories import TEST_ACTOR, bearer
from tests.tiers.support import earn, events, history, new_member, set_standing, standing

SECOND = timedelta(seconds=1)


async def reevaluate(db: Database, member_id: int, now: datetime | None = None
                     ) -> Change | None:
    result: Change | None = await db.transaction(
        lambda s: TierService(s).reevaluate(member_id, now=now))
    return result


async def test_threshold_exactly_reached(client: httpx.AsyncClient, db: Database,
                                         in_ledger: Any) -> None:
    m = await new_member(client, db)
    await earn(in_ledger, m["accountId"], status_miles=25000)
    now = datetime.now(UTC)
    change = await reevaluate(db, m["id"], now)
    assert change is not None and change.to_code == "SILVER"
    assert await standing(db, m["id"]) == ("SILVER", add_months(now, 12))
    assert await history(db, m["id"]) == [("BASIC", "SILVER", "upgrade")]
    [event] = await events(db, "tier.changed", "memberId", m["id"])
    assert (event["from"], event["to"], event["reason"]) == ("BASIC", "SILVER", "upgrade")


async def test_one_short_stays_basic(client: httpx.AsyncClient, db: Database,
                                     in_ledger: Any) -> None:
    m = await new_member(client, db)
    await earn(in_ledger, m["accountId"], status_miles=24999, segments=29)
    assert await reevaluate(db, m["id"]) is None
    assert await standing(db, m["id"]) == ("BASIC", None)
    assert await history(db, m["id"]) == []


async def test_segments_path(client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    await earn(in_ledger, m["accountId"], status_miles=100, segments=60)
    change = await reevaluate(db, m["id"])
    assert change is not None and change.to_code == "GOLD"


async def test_status_comes_from_earning_not_from_the_balance(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    [entry] = await earn(in_ledger, m["accountId"], status_miles=30000)
    # A reversal is a negative posting in the window: nothing is left to qualify on.
    await in_ledger(lambda ledger: Ledger.reverse(ledger, entry.id, actor=TEST_ACTOR,
                                                  reason="flight cancelled"))
    await earn(in_ledger, m["accountId"], miles=500000)
    assert await reevaluate(db, m["id"]) is None
    assert (await standing(db, m["id"]))[0] == "BASIC"


async def test_rolling_window_edges(client: httpx.AsyncClient, db: Database,
                                    in_ledger: Any) -> None:
    inside, outside = await new_member(client, db), await new_member(client, db)
    [a] = await earn(in_ledger, inside["accountId"], status_miles=25000)
    [b] = await earn(in_ledger, outside["accountId"], status_miles=25000)
    # The posting made exactly 12 months before "now" is still in the window; a microsecond
    # later it is not.
    assert (await reevaluate(db, inside["id"], add_months(a.created_at, 12))) is not None
    assert (await reevaluate(
        db, outside["id"], add_months(b.created_at, 12) + timedelta(microseconds=1))) is None


async def test_downgrade_one_tier_at_a_time_only_at_period_end(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    await earn(in_ledger, m["accountId"], status_miles=100000)
    await reevaluate(db, m["id"])
    tier, until = await standing(db, m["id"])
    assert tier == "PLATINUM" and until is not None
    # Nothing was earned after the upgrade: still Platinum up to the last second.
    assert await reevaluate(db, m["id"], until - SECOND) is None
    change = await reevaluate(db, m["id"], until + SECOND)
    assert change is not None and change.to_code == "GOLD"
    assert await standing(db, m["id"]) == ("GOLD", add_months(until, 12))
    await reevaluate(db, m["id"], add_months(until, 12) + SECOND)
    await reevaluate(db, m["id"], add_months(until, 24) + SECOND)
    assert await standing(db, m["id"]) == ("BASIC", None)
    assert await history(db, m["id"]) == [
        ("BASIC", "PLATINUM", "upgrade"), ("PLATINUM", "GOLD", "downgrade"),
        ("GOLD", "SILVER", "downgrade"), ("SILVER", "BASIC", "downgrade")]


async def test_requalified_in_the_period_keeps_the_tier(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    until = datetime.now(UTC) + timedelta(days=1)
    await set_standing(db, m["id"], "GOLD", until)
    await earn(in_ledger, m["accountId"], segments=60)
    change = await reevaluate(db, m["id"], until + SECOND)
    assert change is not None and change.reason == "requalified"
    assert await standing(db, m["id"]) == ("GOLD", add_months(until, 12))
    assert await history(db, m["id"]) == []


async def test_nightly_pass_upgrades_and_a_second_run_changes_nothing(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    silver, gold, stays = [await new_member(client, db) for _ in range(3)]
    due = await new_member(client, db)
    await earn(in_ledger, silver["accountId"], status_miles=25000)
    await earn(in_ledger, gold["accountId"], segments=60)
    await earn(in_ledger, stays["accountId"], status_miles=24999)
    await set_standing(db, due["id"], "PLATINUM", datetime.now(UTC) - SECOND)
    now = datetime.now(UTC)
    assert await tiers_nightly(db, now=now, step=7) >= 3
    assert (await standing(db, silver["id"]))[0] == "SILVER"
    assert (await standing(db, gold["id"]))[0] == "GOLD"
    assert await standing(db, stays["id"]) == ("BASIC", None)
    assert (await standing(db, due["id"]))[0] == "GOLD"
    before = [await history(db, m["id"]) for m in (silver, gold, stays, due)]
    assert await tiers_nightly(db, now=now) == 0
    assert [await history(db, m["id"]) for m in (silver, gold, stays, due)] == before


async def test_me_tier_shows_progress_and_what_is_missing(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    await earn(in_ledger, m["accountId"], status_miles=30000, segments=5)
    await reevaluate(db, m["id"])
    body = (await client.get("/v1/me/tier", headers=bearer(m["accessToken"]))).json()
    assert body["tier"]["code"] == "SILVER" and body["tier"]["colors"]["background"]
    assert (body["statusMiles"], body["segments"]) == (30000, 5)
    assert body["nextTier"] == {"tier": "GOLD", "statusMiles": 20000, "segments": 55,
                                "by": None}
    assert body["keepTier"]["tier"] == "SILVER"
    assert body["qualification"] == "rolling_12_months"
    assert [h["toTier"] for h in body["history"]] == ["SILVER"]


async def test_me_tier_needs_a_member(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me/tier")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_concurrent_reevaluations_upgrade_once(
        client: httpx.AsyncClient, db: Database, in_ledger: Any) -> None:
    m = await new_member(client, db)
    await earn(in_ledger, m["accountId"], status_miles=50000)
    changes = await asyncio.gather(*(reevaluate(db, m["id"]) for _ in range(8)),
                                   tiers_nightly(db))
    assert sum(1 for c in changes[:8] if c is not None) <= 1
    assert (await standing(db, m["id"]))[0] == "GOLD"
    assert await history(db, m["id"]) == [("BASIC", "GOLD", "upgrade")]
