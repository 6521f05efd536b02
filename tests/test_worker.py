"""The Celery tasks, end to end: a real ``lms worker`` process consumes them from a real broker.

The broker is Redis (127.0.0.1:6379) when it answers, else the directory broker a fresh machine
uses (which tests/test_run_command.py drives through ``./dev run`` in any case). The worker
consumes a queue of its own, so runs side by side never take each other's tasks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import text

from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.tasks import expire_due_holds
from lms.ledger.types import EntryKind
from lms.outbox.relay import ConsumerRegistry, relay
from lms.outbox.repository import Event
from lms.outbox.service import emit
from lms.settings import PROJECT_ROOT, Settings
from lms.worker import create_celery
from tests.conftest import LedgerRunner
from tests.factories import TEST_ACTOR, funded_account

REDIS_URL = "redis://127.0.0.1:6379/13"
WORKER_START_TIMEOUT = 30.0
TASK_TIMEOUT = 20.0


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False




@dataclass
class Worker:
    celery: Celery
    queue: str

    def send(self, task: str, **kwargs: Any) -> None:
        self.celery.send_task(task, kwargs=kwargs, queue=self.queue)


@pytest.fixture(scope="module")
def worker(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir = tmp_path_factory.mktemp("worker")
    broker_url = REDIS_URL if redis_answers() else None
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env |= {"LMS_DATABASE_URL": database_url, "LMS_DATA_DIR": str(data_dir),
            "LMS_LOG_LEVEL": "INFO"}
    if broker_url:
        env["LMS_BROKER_URL"] = broker_url
    log = data_dir / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lms.cli", "worker", "--no-beat", "--concurrency=1",
             f"--queues={queue}", f"--hostname={queue}@%h"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(proc, log)
        yield Worker(create_celery(Settings(broker_url=broker_url, data_dir=data_dir)), queue)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if broker_url:
            # The queue's binding outlives the worker in Redis; leave nothing behind.
            with redis.Redis.from_url(broker_url) as client:
                client.delete(queue, *client.scan_iter(match=f"_kombu.binding*.{queue}"))


def wait_until_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"lms worker exited with {proc.returncode}:\n{log.read_text()}")
        if " ready." in log.read_text():
            return
        time.sleep(0.1)
    pytest.fail(f"lms worker did not start in {WORKER_START_TIMEOUT}s:\n{log.read_text()}")


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TASK_TIMEOUT
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    # Plain reads: Ledger.get_hold would expire a due hold by itself and hide the worker.
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def add_events(db: Database, topic: str, count: int) -> list[int]:
    async def work(session: Any) -> list[int]:
        for n in range(count):
            await emit(session, topic, {"n": n})
        rows = await session.execute(
            text("SELECT id FROM outbox_events WHERE topic = :t ORDER BY id"), {"t": topic})
        return [r.id for r in rows]
    return await db.transaction(work)


async def published_at(db: Database, topic: str) -> dict[int, datetime | None]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT id, published_at FROM outbox_events WHERE topic = :t"), {"t": topic})
        return {r.id: r.published_at for r in rows}


async def drain(db: Database) -> None:
    """Relay what earlier tests left (outbox rows, and journal entries: the feed of miles
    events) with no consumer, so that the worker's relays have nothing else to do and end
    before the next test: a relay still running would claim that test's events."""
    while await relay(db, ConsumerRegistry()):
        pass


def past() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


async def test_expire_holds_task_releases_due_holds(worker: Worker, db: Database,
                                                    in_ledger: LedgerRunner[Any]) -> None:
    account = await in_ledger(lambda ledger: funded_account(ledger, 1000))
    due = await in_ledger(lambda ledger: ledger.create_hold(
        account, 400, actor=TEST_ACTOR, expires_at=past()))
    live = await in_ledger(lambda ledger: ledger.create_hold(
        account, 100, actor=TEST_ACTOR, expires_at=datetime.now(UTC) + timedelta(hours=1)))
    held_sql = "SELECT held FROM balances WHERE account_id = :a AND unit = 'MILES'"
    status_sql = "SELECT status FROM holds WHERE id = :h"
    assert await scalar(db, held_sql, a=account) == 500

    worker.send("ledger.expire_holds", limit=100)

    async def released() -> bool:
        return bool(await scalar(db, status_sql, h=due.id) == "expired")
    await eventually(released, "the due hold to expire")
    assert await scalar(db, held_sql, a=account) == 100
    assert await scalar(db, status_sql, h=live.id) == "pending"
    assert await scalar(db, "SELECT count(*) FROM outbox_events WHERE topic = 'hold.expired' "
                            "AND (payload->>'holdId')::bigint = :h", h=due.id) == 1


async def test_expire_lots_task_moves_due_miles_to_breakage(
        worker: Worker, db: Database, in_ledger: LedgerRunner[Any]) -> None:
    async def open_with_due_lot(ledger: Ledger) -> int:
        account = await funded_account(ledger)
        await ledger.credit(account, 700, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            lot_expires_at=past())
        await ledger.credit(account, 300, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        return account
    account = await in_ledger(open_with_due_lot)
    posted_sql = "SELECT posted FROM balances WHERE account_id = :a AND unit = 'MILES'"

    worker.send("ledger.expire_lots", limit=100)

    async def expired() -> bool:
        return bool(await scalar(db, posted_sql, a=account) == 300)
    await eventually(expired, "the due lot to expire")


async def test_relay_task_publishes_each_event_once(worker: Worker, db: Database) -> None:
    await drain(db)
    topic = f"test.relay.{uuid.uuid4().hex[:8]}"
    first = await add_events(db, topic, 3)

    worker.send("outbox.relay")

    async def all_published() -> bool:
        return all(v is not None for v in (await published_at(db, topic)).values())
    await eventually(all_published, "the relay to publish the events")
    before = await published_at(db, topic)

    # A second run must leave the published rows alone; the event added in between shows
    # that it did run.
    later = set(await add_events(db, topic, 1)) - set(first)
    worker.send("outbox.relay")
    await eventually(all_published, "the second relay")
    after = await published_at(db, topic)
    assert {i: after[i] for i in first} == before
    assert len(later) == 1 and after[later.pop()] is not None


async def test_concurrent_relays_hand_each_event_over_once(db: Database) -> None:
    await drain(db)
    topic = f"test.relay.{uuid.uuid4().hex[:8]}"
    ids = await add_events(db, topic, 25)
    seen: Counter[int] = Counter()

    async def count(event: Event) -> None:
        seen[event.id] += 1
        await asyncio.sleep(0)  # let the other relay interleave

    registry = ConsumerRegistry()
    registry.register(topic, count)
    await asyncio.gather(*(relay(db, registry, batch_size=4) for _ in range(3)))
    assert seen == Counter({i: 1 for i in ids})
    await relay(db, registry, batch_size=4)
    assert seen == Counter({i: 1 for i in ids})


async def test_expire_due_holds_is_safe_to_run_twice(db: Database,
                                                     in_ledger: LedgerRunner[Any]) -> None:
    account = await in_ledger(lambda ledger: funded_account(ledger, 300))
    hold = await in_ledger(lambda ledger: ledger.create_hold(
        account, 300, actor=TEST_ACTOR, expires_at=past()))
    first, second = await asyncio.gather(expire_due_holds(db, 10), expire_due_holds(db, 10))
    assert first + second >= 1
    assert await scalar(db, "SELECT status FROM holds WHERE id = :h", h=hold.id) == "expired"
    assert await scalar(db, "SELECT held FROM balances WHERE account_id = :a "
                            "AND unit = 'MILES'", a=account) == 0
