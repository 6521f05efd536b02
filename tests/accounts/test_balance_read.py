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
