"""kill -9 of a Celery worker in the middle of hold expiry, lot expiry and webhook delivery
(issue 7 §3): after a restart the work finishes, nothing is applied twice in the ledger, and
every webhook reaches the partner under one stable id.

The worker is a real ``lms worker`` process (three pool processes) on a real broker: RabbitMQ
when it answers (an unacknowledged message comes back as soon as the dead worker's connection
drops: tasks are acknowledged late), else Redis, else the directory broker a fresh machine
uses. Those two give a killed task back only after a visibility timeout, or never; there the
work comes back with the beat's next run (and, for webhooks, the sweep once the lease has run
out), which the test plays by sending the same tasks again.

"In the middle" is made certain, not left to timing. The three jobs run at once, one in each
pool process, and the worker is killed while all three are stuck half-way: hold expiry has
committed its first batches and waits on a balance row the test keeps locked; lot expiry has
committed one batch of accounts and waits on another locked row; the partner's endpoint holds
the first webhook request unanswered.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from celery import Celery
from kombu import Connection

from lms.db import Database, asyncpg_dsn
from lms.ledger.service import Ledger
from lms.ledger.types import AccountKind, EntryKind
from lms.settings import Settings
from lms.tiers.jobs import EXPIRY_BATCH
from lms.webhooks import signing
from lms.webhooks.delivery import claim_due, webhook_id
from lms.worker import create_celery
from tests.chaos.load import budget, rows
from tests.chaos.processes import WorkerProcess, lms_env
from tests.conftest import SHARDS, LedgerRunner
from tests.factories import TEST_ACTOR
from tests.partners.support import admin_headers
from tests.settlement.support import buy, give_back
from tests.test_worker import redis_answers
from tests.webhooks.support import hooked_shop, relay_webhooks

pytestmark = pytest.mark.chaos

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/13"
TIMEOUT = 90.0
HOLDS_PER_RUN = 5


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            pass
        with Connection(RABBITMQ_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def chosen_broker() -> str | None:
    """``CHAOS_BROKER`` (rabbitmq, redis or directory), else the first of them that answers;
    None is the directory broker."""
    wanted = os.environ.get("CHAOS_BROKER")
    if wanted == "rabbitmq" or (wanted is None and rabbitmq_answers()):
        return RABBITMQ_URL
    if wanted == "redis" or (wanted is None and redis_answers()):
        return REDIS_URL
    return None


@dataclass
class Worker:
    process: WorkerProcess
    celery: Celery
    redelivers: bool

    def send(self, task: str, **kwargs: Any) -> str:
        result = self.celery.send_task(task, kwargs=kwargs, queue=self.process.queue)
        return str(result.id)

    def succeeded(self, task_id: str) -> bool:
        # A redelivered message keeps its task id.
        return f"[{task_id}] succeeded" in self.process.output()


@pytest.fixture
def worker(database_url: str, tmp_path: Path) -> Iterator[Worker]:
    broker_url = chosen_broker()
    queue = f"chaos-{uuid.uuid4().hex[:12]}"
    env = lms_env(database_url, LMS_DATA_DIR=str(tmp_path),
                  LMS_SYSTEM_ACCOUNT_SHARDS=str(SHARDS))
    if broker_url:
        env["LMS_BROKER_URL"] = broker_url
    process = WorkerProcess(env, tmp_path / "worker.log", queue, concurrency=3)
    celery = create_celery(Settings(broker_url=broker_url, data_dir=tmp_path))
    process.start_and_wait()
    try:
        yield Worker(process, celery, redelivers=broker_url == RABBITMQ_URL)
    finally:
        process.stop()
        if broker_url:
            with celery.connection_for_write() as conn:
                channel: Any = conn.default_channel
                channel.queue_delete(queue)
                if broker_url == RABBITMQ_URL:
                    channel.exchange_delete(queue)


async def eventually(check: Any, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{worker.process.output()[-4000:]}")
        await asyncio.sleep(0.1)


async def count(db: Database, sql: str, **params: Any) -> int:
    [[n]] = await rows(db, sql, **params)
    return int(n)


@asynccontextmanager
async def row_lock(db: Database, account_id: int) -> AsyncIterator[Any]:
    """Hold the lock on one balance row until the block ends; yields a check that tells
    whether someone (the job) is waiting on it."""
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SELECT 1 FROM balances WHERE account_id = $1 FOR UPDATE",
                           account_id)
        pid = conn.get_server_pid()

        async def waited_on() -> bool:
            return await count(db, "SELECT count(*) FROM pg_stat_activity "
                                   "WHERE :p = ANY(pg_blocking_pids(pid))", p=pid) > 0
        yield waited_on
        await transaction.rollback()
    finally:
        await conn.close()


async def stable(db: Database, sql: str, **params: Any) -> int:
    """The count once it stopped moving: the job's other batches have committed."""
    last = -1
    while True:
        now = await count(db, sql, **params)
        if now == last:
            return now
        last = now
        await asyncio.sleep(0.5)


@dataclass
class GatedReceiver:
    """A partner's webhook endpoint that holds the first request unanswered until the gate
    opens, and records every request it got (what a partner would have processed)."""

    url: str = ""
    secret: str = ""
    arrived: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, headers: dict[str, str], body: bytes) -> None:
        ok = signing.verify(self.secret, headers.get("Webhook-Signature", ""),
                            headers.get("Webhook-Timestamp", ""), body, int(time.time()))
        with self.lock:
            first = not self.received
            self.received.append((headers.get("Webhook-Id", ""), body, ok))
        if first:
            self.arrived.set()
            self.gate.wait(TIMEOUT)


@contextmanager
def gated_receiver() -> Iterator[GatedReceiver]:
    state = GatedReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.take(dict(self.headers.items()), body)
            try:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender died while we held its request

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/lms"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join()


async def due_holds(ledger: Ledger, n: int) -> list[tuple[int, int]]:
    """(account, hold) pairs: 1,000 miles each, 400 of them held by a hold due a day ago,
    a second apart, so that they come first in the job's order (expiry, id)."""
    first_due = datetime.now(UTC) - timedelta(days=1)
    made = []
    for i in range(n):
        account = await ledger.open_account(AccountKind.MEMBER)
        await ledger.credit(account, 1000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        hold = await ledger.create_hold(account, 400, actor=TEST_ACTOR,
                                        expires_at=first_due + timedelta(seconds=i))
        made.append((account, hold.id))
    return made


async def due_lots(ledger: Ledger, n: int) -> list[int]:
    """Accounts with 700 miles in a lot due a day ago and 300 in a live one."""
    due_at = datetime.now(UTC) - timedelta(days=1)
    made = []
    for _ in range(n):
        account = await ledger.open_account(AccountKind.MEMBER)
        await ledger.credit(account, 700, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            lot_expires_at=due_at)
        await ledger.credit(account, 300, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
        made.append(account)
    return made


async def test_worker_killed_mid_expiry_and_mid_delivery_finishes_the_work_once(
        worker: Worker, db: Database, in_ledger: LedgerRunner[Any],
        client: httpx.AsyncClient, settings: Settings) -> None:
    holds_count = budget("CHAOS_HOLDS", 40)
    # More accounts than one batch of lot expiry, so that it commits a batch and waits in
    # the next, on the last account (due accounts are taken in the order of their ids, and
    # these are the newest).
    lot_accounts = budget("CHAOS_LOT_ACCOUNTS", EXPIRY_BATCH + 50)
    events = budget("CHAOS_WEBHOOKS", 4)
    held = await in_ledger(lambda ledger: due_holds(ledger, holds_count))
    hold_accounts, holds = [a for a, _ in held], [h for _, h in held]
    lotted = await in_ledger(lambda ledger: due_lots(ledger, lot_accounts))
    holds_sql = "SELECT count(*) FROM holds WHERE id = ANY(:h) AND status = 'expired'"
    lots_sql = ("SELECT count(*) FROM balances WHERE account_id = ANY(:a) "
                "AND unit = 'MILES' AND posted = 300")
    admin = await admin_headers(db, settings)
    began = time.monotonic()

    with gated_receiver() as endpoint:
        shop = await hooked_shop(client, admin, db, endpoint)  # type: ignore[arg-type]
        for n in range(events):
            await buy(client, shop, 10000, f"W-{n}")
            await give_back(client, shop, f"W-{n}", 2000)
        await relay_webhooks(db)
        mine = [r.id for r in await rows(
            db, "SELECT id FROM webhook_deliveries WHERE partner_id = :p ORDER BY id",
            p=shop.id)]
        assert len(mine) == events
        # What the beat's sweep does: lease the due deliveries, one task for each.
        leased = [(d, a) for d, a in await claim_due(db) if d in mine]
        assert sorted(d for d, _ in leased) == mine

        def send_all() -> list[str]:
            return [worker.send("ledger.expire_holds", limit=HOLDS_PER_RUN),
                    worker.send("tiers.expire_lots"),
                    *(worker.send("webhooks.deliver", delivery_id=d, attempts=a)
                      for d, a in leased)]

        async with row_lock(db, hold_accounts[holds_count // 2]) as holds_wait, \
                row_lock(db, lotted[-1]) as lots_wait:
            tasks = send_all()
            await eventually(holds_wait, "hold expiry to reach the locked account", worker)
            await eventually(lots_wait, "lot expiry to reach the locked account", worker)
            await asyncio.to_thread(endpoint.arrived.wait, TIMEOUT)
            assert endpoint.arrived.is_set(), worker.process.output()[-4000:]
            holds_before = await count(db, holds_sql, h=holds)
            lots_before = await stable(db, lots_sql, a=lotted)
            worker.process.kill()
        # The locks are gone and the endpoint answers the dead worker's request now.
        endpoint.gate.set()

        # Half-way: the batches before the locks committed, the ones waiting rolled back.
        assert holds_before == holds_count // 2 // HOLDS_PER_RUN * HOLDS_PER_RUN
        assert 0 < lots_before < lot_accounts
        assert await count(db, holds_sql, h=holds) == holds_before
        assert await count(db, lots_sql, a=lotted) == lots_before
        assert [r.status for r in await rows(
            db, "SELECT status FROM webhook_deliveries WHERE id = ANY(:d)", d=mine)
        ] == ["pending"] * events

        await asyncio.to_thread(worker.process.start_and_wait)
        if not worker.redelivers:
            tasks = send_all()  # the beat's next runs; the sweep after the lease

        async def finished() -> bool:
            return all(worker.succeeded(t) for t in tasks)
        await eventually(finished, "the tasks to run again and finish", worker)
    elapsed = time.monotonic() - began

    # Hold expiry: every hold expired once (one event each), its miles released once.
    assert await count(db, holds_sql, h=holds) == holds_count
    hold_events = Counter(r.hold for r in await rows(
        db, "SELECT (payload->>'holdId')::bigint AS hold FROM outbox_events "
            "WHERE topic = 'hold.expired' AND (payload->>'holdId')::bigint = ANY(:h)",
        h=holds))
    assert hold_events == Counter(dict.fromkeys(holds, 1))
    balances = {r.account_id: (r.posted, r.held) for r in await rows(
        db, "SELECT account_id, posted, held FROM balances WHERE account_id = ANY(:a) "
            "AND unit = 'MILES'", a=hold_accounts)}
    assert balances == dict.fromkeys(hold_accounts, (1000, 0))

    # Lot expiry: one expiry entry per account, the due 700 miles gone, the live 300 kept.
    expiries = Counter(r.account_id for r in await rows(
        db, "SELECT p.account_id FROM postings p JOIN journal_entries e ON e.id = p.entry_id "
            "WHERE e.kind = 'expiry' AND p.account_id = ANY(:a)", a=lotted))
    assert expiries == Counter(dict.fromkeys(lotted, 1))
    assert await count(db, lots_sql, a=lotted) == lot_accounts

    # Webhooks: at least once, always under the delivery's one id and with the same body.
    # The request the worker died waiting on was sent again, and nothing else was.
    got = Counter(i for i, _, _ in endpoint.received)
    first = endpoint.received[0][0]
    assert got == Counter(webhook_id(d) for d in mine) + Counter([first])
    bodies = {i: {b for j, b, _ in endpoint.received if j == i} for i in got}
    assert all(len(b) == 1 for b in bodies.values())
    assert all(ok for _, _, ok in endpoint.received)
    # The killed attempt's record rolled back with its transaction.
    assert [(r.status, r.attempts) for r in await rows(
        db, "SELECT status, attempts FROM webhook_deliveries WHERE id = ANY(:d)", d=mine)
    ] == [("delivered", 1)] * events
    print(f"\nchaos worker-kill: one SIGKILL with {holds_before}/{holds_count} holds and "
          f"{lots_before}/{lot_accounts} lot accounts expired and webhook "
          f"{first} unanswered; "
          f"{'redelivered by the broker' if worker.redelivers else 'sent again'}; "
          f"{len(endpoint.received)} webhook requests for {events} deliveries; "
          f"{elapsed:.1f}s")
