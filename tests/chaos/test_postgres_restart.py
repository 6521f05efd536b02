"""PostgreSQL restarted under a load (issue 7 §3): clients get 503 problem+json (never a 500,
never a hang), the API recovers by itself without being restarted, and no entry is half
written: every request, retried with its Idempotency-Key after a 503, is applied once.

The database is a private server (tests/chaos/private_postgres.py), restarted with
``pg_ctl restart -m fast``, stopped for a while and started again, and restarted with
``-m immediate`` (a crash and WAL recovery), one after the other while the clients run.
``CHAOS_REQUESTS``, ``CHAOS_CLIENTS`` and ``CHAOS_DB_RESTARTS`` size it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lms import migrate
from lms.app import create_app
from lms.db import Database, raw_connection
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.chaos.load import Faults, Load, assert_applied_exactly_once, budget, build_programme
from tests.chaos.private_postgres import PrivatePostgres
from tests.chaos.processes import ApiServer, ledger_verify, lms_env
from tests.conftest import SHARDS, violations
from tests.factories import asgi_client
from tests.partners.support import admin_headers

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = 2.0
# What each fault does, in turn: a clean restart, a stop with clients still sending, a crash.
FAULTS = ("fast", "outage", "immediate")


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def private_db(postgres: PrivatePostgres) -> AsyncIterator[Database]:
    await asyncio.to_thread(migrate.upgrade, postgres.url)
    database = Database(postgres.url, pool_size=5, max_overflow=5)

    async def ensure(session: AsyncSession) -> None:
        await SystemAccounts(SHARDS).ensure(LedgerRepository(await raw_connection(session)))

    await database.transaction(ensure)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def server(postgres: PrivatePostgres, private_db: Database,
           tmp_path: Path) -> Iterator[ApiServer]:
    env = lms_env(postgres.url, LMS_SYSTEM_ACCOUNT_SHARDS=str(SHARDS),
                  LMS_DATA_DIR=str(tmp_path), LMS_DB_POOL_SIZE="10", LMS_DB_MAX_OVERFLOW="5")
    api = ApiServer(env, tmp_path / "serve.log")
    api.start_and_wait()
    try:
        yield api
    finally:
        api.stop()


async def test_postgres_restarts_answer_503_and_the_api_recovers_by_itself(
        postgres: PrivatePostgres, private_db: Database, server: ApiServer) -> None:
    clients = budget("CHAOS_CLIENTS", 6)
    operations = budget("CHAOS_REQUESTS", 90)
    restarts = budget("CHAOS_DB_RESTARTS", len(FAULTS))
    each = max(1, operations // clients)
    settings = Settings(database_url=postgres.url, system_account_shards=SHARDS,
                        log_level="WARNING")
    async with asgi_client(create_app(settings, db=private_db)) as setup:
        admin = await admin_headers(private_db, settings)
        programme = await build_programme(setup, admin, private_db, clients,
                                            holds_each=each // 2 + 1)
    await private_db.dispose()  # its connections die with the server; the checks reconnect
    faults = Faults()
    done: list[str] = []

    async def restarter() -> None:
        total = each * clients
        for n in range(restarts):
            await faults.wait_for_completed(total * (n + 1) // (restarts + 1))
            fault = FAULTS[n % len(FAULTS)]
            if fault == "outage":
                await asyncio.to_thread(postgres.stop, "fast")
                await asyncio.sleep(OUTAGE_SECONDS)
                await asyncio.to_thread(postgres.start)
            else:
                await asyncio.to_thread(postgres.restart, fault)
            done.append(fault)

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base) as http:
        # No retry without an answer: a hang past the timeout or a dropped connection fails.
        load = Load(http, programme, faults, retry_no_answer=False, retry_unavailable=True)
        await asyncio.gather(load.run(each, seed=2), restarter())
        elapsed = time.monotonic() - began
        tally = load.tally
        assert len(done) == restarts
        # The same process answers again: it reconnected by itself.
        assert server.exited() is None
        ready = await http.get("/ready", timeout=10)
        assert ready.status_code == 200, ready.text

    assert tally.unavailable >= 1, "no client saw the database go away"
    assert tally.slowest < 20.0
    await assert_applied_exactly_once(private_db, load)
    assert await violations(private_db) == []
    verify = await asyncio.to_thread(ledger_verify, server.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The app logs every 500 it answers; asyncpg's own warnings while the server was down
    # (its pool retrying its minimum of connections) are expected.
    log = server.output()
    assert "unhandled error" not in log and "http error 5" not in log, log[-5000:]
    print(f"\nchaos postgres-restart: {len(tally.calls)} requests ({tally.sent} sent) from "
          f"{clients} clients, faults {', '.join(done)}, {tally.unavailable} answered 503 "
          f"and retried, {tally.replayed} replayed, slowest answer {tally.slowest:.2f}s, "
          f"{elapsed:.1f}s")
