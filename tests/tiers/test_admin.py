"""The admin API of tiers and policies: versions that start in the future, a ladder that
stays a ladder, and nothing changed by a refused request."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.db import Database
from lms.settings import Settings
from lms.tiers.service import TierService
from tests.factories import bearer, unique_email
from tests.partners.support import admin_headers, assert_problem

# Far in the future, so that no other test's evaluation sees these versions.
DAY = date(2999, 1, 1)
AT = datetime(2999, 1, 1, tzinfo=UTC)


def gold(**overrides: Any) -> dict[str, Any]:
    return {"code": "GOLD", "name": "Gold", "rank": 2, "statusMilesThreshold": 60000,
            "segmentsThreshold": 60, "backgroundColor": "rgb(212, 175, 55)",
            "foregroundColor": "#000000", "labelColor": "#333333",
            "effectiveFrom": DAY.isoformat()} | overrides


async def thresholds(db: Database, on: datetime) -> dict[str, int]:
    async def work(session: AsyncSession) -> dict[str, int]:
        ladder = await TierService(session).ladder(on)
        return {t.code: t.status_miles for t in ladder.tiers}

    return await db.transaction(work)


async def test_a_tier_version_applies_from_its_day_and_ends_the_one_before(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    before = await thresholds(db, AT)
    response = await client.post("/v1/admin/programme/tiers", json=gold(), headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["effectiveTo"] is None

    assert (await thresholds(db, AT))["GOLD"] == 60000
    assert await thresholds(db, AT - timedelta(days=1)) == before
    versions = (await client.get("/v1/admin/programme/tiers", headers=admin)).json()
    golds = [v for v in versions if v["code"] == "GOLD"]
    assert [v["effectiveTo"] for v in golds] == [DAY.isoformat(), None]

    again = await client.post("/v1/admin/programme/tiers", json=gold(name="Or"),
                              headers=admin)
    assert_problem(again, 409, "rule_version_exists")


async def test_refused_tier_versions_change_nothing(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    versions = (await client.get("/v1/admin/programme/tiers", headers=admin)).json()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    cases = [
        (gold(effectiveFrom=datetime.now(UTC).date().isoformat()), 422, "validation_error"),
        (gold(effectiveFrom="2998-06-01", statusMilesThreshold=1), 422, "ladder_invalid"),
        (gold(effectiveFrom="2998-06-01", rank=1), 422, "ladder_invalid"),
        (gold(code="BASIC", rank=0, statusMilesThreshold=10,
              effectiveFrom=tomorrow.isoformat()), 422, "ladder_invalid"),
        (gold(backgroundColor="red"), 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = await client.post("/v1/admin/programme/tiers", json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
        if code:
            assert_problem(response, status, code)
    assert (await client.get("/v1/admin/programme/tiers", headers=admin)).json() == versions


async def test_policy_versions_are_checked_and_audited(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    url = "/v1/admin/programme/policies"
    for name, value in [("expiry_months", "abc"), ("expiry_months", "0"),
                        ("tier_qualification", "fortnightly"), ("expiry_policy", "never")]:
        response = await client.post(url, json={"name": name, "value": value,
                                                "effectiveFrom": AT.isoformat()},
                                     headers=admin)
        assert_problem(response, 422, "validation_error")
    past = await client.post(url, json={"name": "expiry_months", "value": "24",
                                        "effectiveFrom": "2020-01-01T00:00:00Z"},
                             headers=admin)
    assert_problem(past, 422, "validation_error")

    added = await client.post(url, json={"name": "tier_qualification",
                                         "value": "calendar_year",
                                         "effectiveFrom": AT.isoformat()}, headers=admin)
    assert added.status_code == 201, added.text
    listed = (await client.get(url, headers=admin)).json()
    assert {"name": "tier_qualification", "value": "calendar_year",
            "effectiveFrom": "2999-01-01T00:00:00Z"} in listed

    async def policy(session: AsyncSession) -> tuple[str, str]:
        service = TierService(session)
        return (str((await service.policies(AT)).qualification),
                str((await service.policies(AT - timedelta(days=1))).qualification))

    assert await db.transaction(policy) == ("calendar_year", "rolling_12_months")


async def test_only_admins_change_rules(client: httpx.AsyncClient, db: Database,
                                        settings: Settings) -> None:
    async def agent_token(session: Any) -> str:
        auth = AuthService(session, settings)
        staff_id = await auth.create_staff(email=unique_email("agent"), name="Agent",
                                           role="agent", password="agent password 123")
        return (await auth.issue_token(Principal("staff", staff_id, Role.AGENT))).token

    agent = bearer(await db.transaction(agent_token))
    response = await client.post("/v1/admin/programme/tiers", json=gold(), headers=agent)
    assert_problem(response, 403, "forbidden")
