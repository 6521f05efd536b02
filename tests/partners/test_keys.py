"""API keys: shown once, stored hashed, scopes, expiry, rotation, revocation, IP allow-list,
rate limit; the admin API's guard."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lms.audit.models import AuditRecord
from lms.db import Database
from lms.partners.errors import RateLimited
from lms.partners.models import ApiKey
from lms.partners.service import ApiKeyService, KeyCheck
from tests.factories import bearer, register_member
from tests.partners.support import (
    accrual_body,
    accrue,
    assert_problem,
    iso,
    issue_key,
    make_partner,
    now,
    probe,
)


async def key_rows(db: Database, partner_id: int) -> list[ApiKey]:
    async def load(session: AsyncSession) -> list[ApiKey]:
        return list((await session.execute(select(ApiKey).where(
            ApiKey.partner_id == partner_id))).scalars())

    return await db.transaction(load)


async def audit_of(db: Database, code: str) -> list[AuditRecord]:
    async def load(session: AsyncSession) -> list[AuditRecord]:
        return list((await session.execute(select(AuditRecord).where(
            AuditRecord.target_type == "partner", AuditRecord.target_id == code)
            .order_by(AuditRecord.id))).scalars())

    return await db.transaction(load)


async def test_key_is_shown_once_and_stored_only_as_its_hash(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database) -> None:
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"], ["accrue", "statements"])
    mark, prefix, secret = key.split("_", 2)
    assert mark == "lms" and len(prefix) == 8 and len(secret) >= 43

    listed = await client.get(f"/v1/admin/partners/{partner['code']}/api-keys",
                              headers=admin)
    assert listed.status_code == 200
    assert secret not in listed.text and "key\"" not in listed.text
    assert [k["prefix"] for k in listed.json()] == [prefix]

    [row] = await key_rows(db, partner["id"])
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert all(secret not in str(value) for value in vars(row).values())
    assert (await probe(client, key)).status_code == 404  # authenticated: accrual unknown

    audit = await audit_of(db, partner["code"])
    assert [a.action for a in audit] == ["partner.created", "partner.earn_rate_added",
                                         "api_key.issued"]
    assert all(a.actor_type == "staff" and a.actor_role == "admin" for a in audit)
    assert secret not in str(audit[-1].after) and row.key_hash not in str(audit[-1].after)


async def test_wrong_unknown_revoked_and_expired_keys_are_401(
        client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"])
    prefix = key.split("_")[1]
    for wrong in (key[:-2] + ("AA" if not key.endswith("AA") else "BB"),
                  "lms_00000000_" + "x" * 43, "lms_garbage", "not-a-token"):
        assert_problem(await probe(client, wrong), 401, "unauthorized")

    expired = await issue_key(client, admin, partner["code"],
                              expiresAt=iso(now() - timedelta(seconds=1)))
    assert_problem(await probe(client, expired), 401, "unauthorized")

    revoked = await client.post(f"/v1/admin/api-keys/{prefix}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_problem(await probe(client, key), 401, "unauthorized")
    assert_problem(await client.post("/v1/admin/api-keys/ffffffff/revoke", headers=admin),
                   404, "api_key_not_found")


async def test_rotation_keeps_the_old_key_for_the_overlap_only(
        client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin)
    old = await issue_key(client, admin, partner["code"], ["accrue", "redeem"],
                          rateLimitPerMinute=1000)
    rotated = await client.post(f"/v1/admin/partners/{partner['code']}/api-keys/rotate",
                                headers=admin, json={"overlapSeconds": 3600})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["key"]
    assert rotated.json()["apiKey"]["scopes"] == ["accrue", "redeem"]
    assert rotated.json()["apiKey"]["rateLimitPerMinute"] == 1000
    assert (await probe(client, old)).status_code == 404  # still works in the overlap
    assert (await probe(client, new)).status_code == 404

    again = await client.post(f"/v1/admin/partners/{partner['code']}/api-keys/rotate",
                              headers=admin, json={"overlapSeconds": 0})
    assert again.status_code == 201
    newest = again.json()["key"]
    # Overlap over: both earlier keys stop working, the newest works.
    assert_problem(await probe(client, old), 401, "unauthorized")
    assert_problem(await probe(client, new), 401, "unauthorized")
    assert (await probe(client, newest)).status_code == 404


async def test_a_key_without_the_scope_is_403(client: httpx.AsyncClient,
                                              admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"], ["statements"])
    member = await register_member(client)
    body = accrual_body(member["member"]["cardNumber"])
    assert_problem(await accrue(client, key, body), 403, "insufficient_scope")
    # A member's (or staff) token is not a partner key at all.
    assert_problem(await accrue(client, member["accessToken"], body), 403,
                   "insufficient_scope")


async def test_ip_allow_list(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin)
    # httpx's ASGI transport calls from 127.0.0.1
    elsewhere = await issue_key(client, admin, partner["code"],
                                ipAllowList=["10.0.0.0/8", "2001:db8::/32"])
    assert_problem(await probe(client, elsewhere), 403, "ip_not_allowed")
    here = await issue_key(client, admin, partner["code"], ipAllowList=["127.0.0.0/8"])
    assert (await probe(client, here)).status_code == 404
    bad = await client.post(f"/v1/admin/partners/{partner['code']}/api-keys", headers=admin,
                            json={"scopes": ["accrue"], "ipAllowList": ["not-a-network"]})
    assert_problem(bad, 422, "invalid_ip_allow_list")


async def test_rate_limit_answers_429_with_retry_after(
        client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"], rateLimitPerMinute=2)
    # Five calls span at most two one-minute windows, so one window sees at least three.
    responses = [await probe(client, key) for _ in range(5)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    body = assert_problem(limited[0], 429, "rate_limited")
    assert 1 <= int(limited[0].headers["Retry-After"]) <= 61
    assert body["limit"] == 2
    # Another key of the same partner has its own counter.
    other = await issue_key(client, admin, partner["code"])
    assert (await probe(client, other)).status_code == 404


async def test_rate_limit_holds_under_concurrent_calls(
        client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"], rateLimitPerMinute=5)
    responses = await asyncio.gather(*(probe(client, key) for _ in range(20)))
    ok = [r for r in responses if r.status_code == 404]
    # Within one window exactly 5 pass; across a window edge at most 10.
    assert 5 <= len(ok) <= 10
    assert all(r.status_code in (404, 429) for r in responses)


async def test_a_request_stamped_before_the_minute_turned_counts_in_the_new_window(
        client: httpx.AsyncClient, admin: dict[str, str], db: Database) -> None:
    """Concurrent calls at the edge of a minute reach the counter out of order: one that
    read the clock at 11:59:59.9 may be counted after one of 12:00:00.1. The window never
    moves back, so such calls count in the newer window instead of resetting it."""
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"], rateLimitPerMinute=5)
    newer = datetime(2031, 5, 1, 12, 0, 0, 100_000, tzinfo=UTC)
    older = newer - timedelta(seconds=0.2)

    async def call(at: datetime) -> KeyCheck:
        return await db.autocommit(
            lambda conn: ApiKeyService(conn).authenticate(key, "127.0.0.1", now=at))

    passed = 0
    for at in [older, newer] * 10:
        check = await call(at)
        passed += check.refusal is None
        assert check.refusal is None or isinstance(check.refusal, RateLimited)
    # The first call opens 11:59's window, the second 12:00's; all others count in 12:00's.
    assert passed == 1 + 5


async def test_admin_api_is_for_admins_only(client: httpx.AsyncClient,
                                            admin: dict[str, str]) -> None:
    member = await register_member(client)
    assert_problem(await client.get("/v1/admin/partners",
                                    headers=bearer(member["accessToken"])), 403, "forbidden")
    assert_problem(await client.get("/v1/admin/partners"), 401, "unauthorized")
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"])
    assert_problem(await client.get("/v1/admin/partners", headers=bearer(key)), 403,
                   "forbidden")
    listed = await client.get("/v1/admin/partners", headers=admin)
    assert partner["code"] in {p["code"] for p in listed.json()}


async def test_partner_creation(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    partner = await make_partner(client, admin, kind="ota", minCashShareBp=2500)
    assert partner["clearingAccountId"] is not None
    assert partner["kind"] == "ota" and partner["minCashShareBp"] == 2500
    again: dict[str, Any] = {"code": partner["code"], "name": "Other", "kind": "shop",
                             "currency": "EUR"}
    assert_problem(await client.post("/v1/admin/partners", json=again, headers=admin), 409,
                   "partner_exists")
    bad = await client.post("/v1/admin/partners", headers=admin, json=again | {
        "code": "x-" + partner["code"][:20], "kind": "bank"})
    assert_problem(bad, 422, "validation_error")
    got = await client.get(f"/v1/admin/partners/{partner['code']}", headers=admin)
    assert [r["milesPerUnitBp"] for r in got.json()["earnRates"]] == [15000]
    assert_problem(await client.get("/v1/admin/partners/nope-nope", headers=admin), 404,
                   "partner_not_found")


async def test_a_partner_key_is_not_signed_out_by_the_members_and_staff_logout(
        client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Sign-out revokes access tokens; an API key is revoked by an admin, so a partner is
    refused there instead of being told (204) that its key was signed out."""
    partner = await make_partner(client, admin)
    key = await issue_key(client, admin, partner["code"], ["accrue"])
    assert_problem(await client.post("/v1/auth/logout", headers=bearer(key)), 403,
                   "forbidden")
    assert (await probe(client, key)).status_code == 404  # the key still works
