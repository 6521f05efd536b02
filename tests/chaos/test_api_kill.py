"""kill -9 of the API in the middle of a load: every request that got no answer is retried
with the same Idempotency-Key and body once the server is back, and each was applied exactly
once (issue 7 §3).

``lms serve`` runs as a real process on the test database; the clients are real HTTP clients
on the loopback. ``CHAOS_REQUESTS`` (operations, about 1.3 requests each), ``CHAOS_CLIENTS``
and ``CHAOS_KILLS`` size it; the defaults are CI's small budget.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lms.db import Database
from lms.settings import Settings
from tests.chaos.load import (
    Faults,
    Load,
    assert_applied_exactly_once,
    budget,
    build_programme,
    replay_all,
)
from tests.chaos.processes import ApiServer, ledger_verify, lms_env
from tests.conftest import SHARDS, violations
from tests.partners.support import admin_headers

pytestmark = pytest.mark.chaos


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    env = lms_env(database_url, LMS_SYSTEM_ACCOUNT_SHARDS=str(SHARDS),
                  LMS_DATA_DIR=str(tmp_path), LMS_DB_POOL_SIZE="10", LMS_DB_MAX_OVERFLOW="5")
    api = ApiServer(env, tmp_path / "serve.log")
    api.start_and_wait()
    try:
        yield api
    finally:
        api.stop()


async def test_killed_api_loses_nothing_and_applies_nothing_twice(
        server: ApiServer, client: httpx.AsyncClient, db: Database, settings: Settings,
        database_url: str) -> None:
    clients = budget("CHAOS_CLIENTS", 6)
    operations = budget("CHAOS_REQUESTS", 90)
    kills = budget("CHAOS_KILLS", 1)
    each = max(1, operations // clients)
    admin = await admin_headers(db, settings)
    programme = await build_programme(client, admin, db, clients, holds_each=each // 2 + 1)
    faults = Faults()
    restarts: list[float] = []

    async def killer() -> None:
        rng = random.Random(7)
        total = each * clients
        for n in range(kills):
            # Somewhere in the n-th slice of the load, while every client has a request out.
            lower = total * n // (kills + 1) + total // (4 * (kills + 1))
            await faults.wait_for_completed(lower + rng.randrange(max(1, total // 10)))
            faults.up.clear()
            server.kill()
            restarts.append(await asyncio.to_thread(server.start_and_wait))
            faults.up.set()

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base) as http:
        load = Load(http, programme, faults, retry_no_answer=True, retry_unavailable=False)
        await asyncio.gather(load.run(each, seed=1), killer())
        elapsed = time.monotonic() - began
        # The answers were stored with the work, before the kills: every one replays.
        assert await replay_all(load) == []
    tally = load.tally

    assert server.kills == kills
    # The kills hit requests in flight, and those were retried until answered.
    assert tally.no_answer >= kills and tally.retried >= 1
    await assert_applied_exactly_once(db, load)
    assert await violations(db) == []
    verify = await asyncio.to_thread(ledger_verify, server.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    print(f"\nchaos api-kill: {len(tally.calls)} requests ({tally.sent} sent) from {clients} "
          f"clients, {kills} kills, {tally.no_answer} without answer, {tally.retried} "
          f"retried, {tally.replayed} replayed, restarts "
          f"{', '.join(f'{s:.1f}s' for s in restarts)}, {elapsed:.1f}s")
