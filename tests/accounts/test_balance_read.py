"""GET /v1/me/balance authenticates inside the statement that reads the page: one statement per
read, and the same answers as every guarded route (a revoked or expired token stops working at
once, other roles are refused)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from lms.accounts.repository import BALANCE_PAGE_FOR_TOKEN
from lms.accounts.service import token_balance_page
from lms.app import create_app
from lms.db import Database
from lms.settings import Settings
from tests.factories import asgi_client, bearer, register_member

PROBLEM = "application/problem+json"


@pytest.fixture
async def own_app(settings: Settings, database_url: str) -> AsyncIterator[Litestar]:
    """The app over a Database of its own, whose connections this module can watch."""
    db = Database(database_url, pool_size=2, max_overflow=0)
    try:
        yield create_app(settings, db)
    finally:
        await db.dispose()


async def test_a_balance_read_is_one_statement(client: httpx.AsyncClient,
                                               own_app: Litestar) -> None:
    member = await register_member(client)
    statements: list[str] = []
    async with asgi_client(own_app) as own:
        first = await own.get("/v1/me/balance", headers=bearer(member["accessToken"]))
        assert first.status_code == 200
        # The connection that read is now idle in the app's pool: watch what it is sent.
        pool = await own_app.state.db.raw_pool()
        for conn in pool._idle:
            conn.add_query_logger(lambda record: statements.append(record.query))
        again = await own.get("/v1/me/balance", headers=bearer(member["accessToken"]))
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon, not at once
    assert again.json() == first.json()
    assert statements == [BALANCE_PAGE_FOR_TOKEN]


async def test_the_page_is_planned_once_per_connection(client: httpx.AsyncClient,
                                                       db: Database) -> None:
    """The plan cache settles on one generic plan for the page. On the 1M-member database a
    parameter that narrowed an index scan (the lots expiring before a date) made it re-plan
    every call, the custom plans looking cheaper for each date, and planning cost the
    backend 4-5 times what executing the page did. Here the tables are too small for the
    planner to care, so the test also looks at the generic plan: no index condition may
    depend on a parameter other than the token's hash."""
    member = await register_member(client)

    async def read_twelve(conn: Any) -> Any:
        for _ in range(12):
            caller, page = await token_balance_page(conn, member["accessToken"])
            assert caller is not None and page is not None
        return await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement = $1", BALANCE_PAGE_FOR_TOKEN)

    plans = await db.autocommit(read_twelve)
    # The first five calls are custom plans whatever the statement (PostgreSQL's rule).
    assert plans["custom_plans"] <= 5
    assert plans["generic_plans"] >= 7

    async def generic_plan(conn: Any) -> list[str]:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute("PREPARE page_plan (text, timestamptz, timestamptz, int) AS "
                               + BALANCE_PAGE_FOR_TOKEN)
            try:
                return [r[0] for r in await conn.fetch(
                    "EXPLAIN EXECUTE page_plan ('x', now(), now(), 5)")]
            finally:
                await conn.execute("DEALLOCATE page_plan")

    conditions = [line for line in await db.autocommit(generic_plan)
                  if "Index Cond" in line]
    assert conditions and all("$1" in c or "$" not in c for c in conditions), conditions


async def refused(client: httpx.AsyncClient, headers: dict[str, str], status: int
                  ) -> dict[str, Any]:
    response = await client.get("/v1/me/balance", headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    body: dict[str, Any] = response.json()
    return body


async def test_a_revoked_token_stops_reading_at_once(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    headers = bearer(member["accessToken"])
    assert (await client.get("/v1/me/balance", headers=headers)).status_code == 200
    assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204
    assert (await refused(client, headers, 401))["code"] == "unauthorized"


async def test_an_expired_token_reads_nothing(client: httpx.AsyncClient,
                                              db: Database) -> None:
    member = await register_member(client)
    await db.autocommit(lambda conn: conn.execute(
        "UPDATE access_tokens SET expires_at = now() - interval '1 second' "
        "WHERE principal_type = 'member' AND principal_id = $1", member["member"]["id"]))
    assert (await refused(client, bearer(member["accessToken"]), 401))["code"] == \
        "unauthorized"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "},
                                     {"Authorization": "Basic dXNlcjpwYXNz"},
                                     {"Authorization": "Bearer made-up-token"},
                                     {"Authorization": "Bearer lms_nope_nope"}])
async def test_no_valid_credentials_is_401(client: httpx.AsyncClient,
                                           headers: dict[str, str]) -> None:
    assert (await refused(client, headers, 401))["code"] == "unauthorized"


async def test_a_staff_token_is_refused_with_403(client: httpx.AsyncClient,
                                                 db: Database) -> None:
    """Another role's live token: the page is not even read (the statement joins the member
    only for role member), and the answer is the member_only guard's."""
    member = await register_member(client)
    await db.autocommit(lambda conn: conn.execute(
        "UPDATE access_tokens SET role = 'agent', principal_type = 'staff' "
        "WHERE principal_type = 'member' AND principal_id = $1", member["member"]["id"]))
    assert (await refused(client, bearer(member["accessToken"]), 403))["code"] == "forbidden"
