"""GET /v1/me/balance authenticates inside the statement that reads the page: one statement per
read, and the same answers as every guarded route (a revoked or expired token stops working at
once, other roles are refused)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar

from lms.accounts.balance_reads import BalanceReads
from lms.accounts.repository import BALANCE_PAGES_FOR_TOKENS, balance_pages_for_tokens
from lms.app import create_app
from lms.auth.service import token_hash
from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Unit
from lms.settings import Settings
from tests.accounts.test_me import account_of
from tests.factories import TEST_ACTOR, asgi_client, bearer, register_member

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
    assert statements == [BALANCE_PAGES_FOR_TOKENS]


async def test_a_refused_token_is_read_once_too(client: httpx.AsyncClient, own_app: Litestar,
                                                db: Database) -> None:
    """A refusal is the route's (lms.app.LmsApp leaves it to Litestar) with what the short
    way already read: still one statement."""
    member = await register_member(client)
    await db.autocommit(lambda conn: conn.execute(
        "UPDATE access_tokens SET role = 'agent', principal_type = 'staff' "
        "WHERE principal_type = 'member' AND principal_id = $1", member["member"]["id"]))
    statements: list[str] = []
    async with asgi_client(own_app) as own:
        await own.get("/health")
        pool = await own_app.state.db.raw_pool()
        warm = await own.get("/v1/me/balance", headers=bearer("made-up-token"))
        assert warm.status_code == 401
        for conn in pool._idle:
            conn.add_query_logger(lambda record: statements.append(record.query))
        refused = await own.get("/v1/me/balance", headers=bearer(member["accessToken"]))
        await asyncio.sleep(0.05)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert statements == [BALANCE_PAGES_FOR_TOKENS]


async def test_the_short_way_answers_what_the_route_answers(
        client: httpx.AsyncClient, app: Litestar, db: Database, in_ledger: Any) -> None:
    """GET /v1/me/balance answered before routing: byte for byte the route's answer."""
    member = await register_member(client)
    account = await account_of(db, member["member"]["id"])

    async def activity(ledger: Ledger) -> None:
        await ledger.credit(account, 1200, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            lot_expires_at=datetime.now(UTC) + timedelta(days=30))
        await ledger.credit(account, 800, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        await ledger.credit(account, 3, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            unit=Unit.SEGMENTS)
        await ledger.create_hold(account, 300, actor=TEST_ACTOR,
                                 expires_at=datetime.now(UTC) + timedelta(hours=1))

    await in_ledger(activity)

    async def route_only(scope: Any, receive: Any, send: Any) -> None:
        await Litestar.__call__(app, scope, receive, send)

    headers = bearer(member["accessToken"]) | {"Accept-Encoding": "gzip"}
    async with asgi_client(route_only) as through_litestar:
        routed = await through_litestar.get("/v1/me/balance", headers=headers)
    short = await client.get("/v1/me/balance", headers=headers)
    assert routed.status_code == short.status_code == 200
    assert short.content == routed.content
    assert short.headers == routed.headers
    assert short.json()["expiringIn90Days"] == 1200


async def test_the_page_is_planned_once_per_connection(client: httpx.AsyncClient,
                                                       db: Database) -> None:
    """The plan cache settles on one generic plan for the page. On the 1M-member database a
    parameter that narrowed an index scan (the lots expiring before a date) made it re-plan
    every call, the custom plans looking cheaper for each date, and planning cost the
    backend 4-5 times what executing the page did. Here the tables are too small for the
    planner to care, so the test also looks at the generic plan: no index condition may
    depend on a parameter (the tokens' hashes come from the array, row by row)."""
    member = await register_member(client)

    async def read_twelve(conn: Any) -> Any:
        for _ in range(12):
            now = datetime.now(UTC)
            [page] = await balance_pages_for_tokens(
                conn, [token_hash(member["accessToken"])], now, now + timedelta(days=90), 5)
            assert page["card_number"] == member["member"]["cardNumber"]
        return await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement = $1", BALANCE_PAGES_FOR_TOKENS)

    plans = await db.autocommit(read_twelve)
    # The first five calls are custom plans whatever the statement (PostgreSQL's rule).
    assert plans["custom_plans"] <= 5
    assert plans["generic_plans"] >= 7

    async def generic_plan(conn: Any) -> list[str]:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute("PREPARE page_plan (text[], timestamptz, timestamptz, int) AS "
                               + BALANCE_PAGES_FOR_TOKENS)
            try:
                return [r[0] for r in await conn.fetch(
                    "EXPLAIN EXECUTE page_plan ('{x}', now(), now(), 5)")]
            finally:
                await conn.execute("DEALLOCATE page_plan")

    conditions = [line for line in await db.autocommit(generic_plan)
                  if "Index Cond" in line]
    assert conditions and all("$" not in c for c in conditions), conditions


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


async def test_concurrent_reads_share_statements_and_each_gets_its_own_answer(
        client: httpx.AsyncClient, own_app: Litestar, db: Database) -> None:
    """Requests that wait at the same time are read by one statement (one runs at a
    time): each still gets its own member's page, and a refused token its own refusal."""
    members = [await register_member(client) for _ in range(6)]
    revoked, staff = await register_member(client), await register_member(client)
    assert (await client.post("/v1/auth/logout",
                              headers=bearer(revoked["accessToken"]))).status_code == 204
    await db.autocommit(lambda conn: conn.execute(
        "UPDATE access_tokens SET role = 'agent', principal_type = 'staff' "
        "WHERE principal_type = 'member' AND principal_id = $1", staff["member"]["id"]))
    async with asgi_client(own_app) as own:
        alone = {m["accessToken"]: (await own.get(
            "/v1/me/balance", headers=bearer(m["accessToken"]))).json() for m in members}
        statements: list[str] = []
        pool = await own_app.state.db.raw_pool()
        for conn in pool._idle:
            conn.add_query_logger(lambda record: statements.append(record.query))
        tokens = [m["accessToken"] for m in members] * 5 + [
            revoked["accessToken"], staff["accessToken"], "made-up-token"]
        answers = await asyncio.gather(*(own.get("/v1/me/balance", headers=bearer(t))
                                         for t in tokens))
        await asyncio.sleep(0.05)
    for token, answer in zip(tokens, answers, strict=True):
        if token in alone:
            assert answer.status_code == 200 and answer.json() == alone[token]
    assert [a.status_code for a in answers[-3:]] == [401, 403, 401]
    assert all(a.headers["content-type"].startswith(PROBLEM) for a in answers[-3:])
    assert set(statements) == {BALANCE_PAGES_FOR_TOKENS}
    assert 2 <= len(statements) < len(tokens)


async def test_a_failed_statement_answers_every_request_it_carried(settings: Settings) -> None:
    """The database away: each request of the batch gets the 503 problem a statement of its
    own would have given, and none waits for ever."""
    db = Database("postgresql://postgres@127.0.0.1:1/nowhere", retry_attempts=1)
    try:
        async with asgi_client(create_app(settings, db)) as own:
            answers = await asyncio.wait_for(asyncio.gather(*(
                own.get("/v1/me/balance", headers=bearer(f"token-{i}"))
                for i in range(5))), timeout=30)
    finally:
        await db.dispose()
    assert [a.status_code for a in answers] == [503] * 5
    assert all(a.headers["content-type"].startswith(PROBLEM) for a in answers)


async def test_a_cancelled_read_leaves_the_others_their_answers(client: httpx.AsyncClient,
                                                               db: Database) -> None:
    """A request whose client went away is cancelled while its statement runs: the others
    of its batch still get their pages, and the next reads go on."""
    members = [await register_member(client) for _ in range(3)]
    reads = BalanceReads(timedelta(days=90), 5, in_flight=1)
    hashes = [token_hash(m["accessToken"]) for m in members]
    first = asyncio.ensure_future(reads.page(db, hashes[0]))  # sent at once, alone
    waiting = [asyncio.ensure_future(reads.page(db, h)) for h in hashes]  # the next batch
    await asyncio.sleep(0)
    waiting[1].cancel()
    pages = await asyncio.gather(first, waiting[0], waiting[2])
    assert [p and p["card_number"] for p in pages] == [
        members[0]["member"]["cardNumber"], members[0]["member"]["cardNumber"],
        members[2]["member"]["cardNumber"]]
    assert waiting[1].cancelled()
    again = await reads.page(db, hashes[1])
    assert again is not None and again["card_number"] == members[1]["member"]["cardNumber"]


async def test_a_statement_stranded_in_another_loop_does_not_stop_this_one(
        client: httpx.AsyncClient, db: Database) -> None:
    """An app that serves one event loop after another (tests do): a statement left running
    in a loop that no longer runs does not hold up the reads of the next loop, nor does its
    end, when it comes, disturb them."""
    member = await register_member(client)
    mine = token_hash(member["accessToken"])
    reads = BalanceReads(timedelta(days=90), 5)
    # A server that accepts connections and never answers: the statement waits for ever.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    stuck_db = Database(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/x",
                        retry_attempts=1)
    old = asyncio.new_event_loop()
    stranded = old.create_task(reads.page(stuck_db, "a-hash"))
    await asyncio.to_thread(old.run_until_complete, asyncio.sleep(0.2))
    assert not stranded.done()
    try:
        page = await asyncio.wait_for(reads.page(db, mine), 10)
        assert page is not None and page["card_number"] == member["member"]["cardNumber"]

        def end_the_old_loop() -> None:
            tasks = asyncio.all_tasks(old)
            for task in tasks:
                task.cancel()
            old.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            old.run_until_complete(stuck_db.dispose())
            old.close()

        await asyncio.to_thread(end_the_old_loop)
    finally:
        silent.close()
    assert stranded.cancelled()
    pages = await asyncio.wait_for(asyncio.gather(*(reads.page(db, mine) for _ in range(3))),
                                   10)
    assert [p and p["card_number"] for p in pages] == [member["member"]["cardNumber"]] * 3
