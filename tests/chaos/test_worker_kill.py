"""kill -9 of a Celery worker in the middle of hold expiry, lot expiry and webhook delivery
(issue 7 §3): after a restart the work finishes, nothing is applied twice in the ledger, and
every webhook reaches the partner with one stable id.

The worker is a real ``lms worker`` process on a real broker: RabbitMQ when it answers (an
unacknowledged message comes back as soon as the dead worker's connection drops: tasks are
acknowledged late), else Redis, else the directory broker a fresh machine uses. Those two
give a killed task back only after a visibility timeout, or never; what brings the work back
there is the beat's next run, which the test plays by sending the task again.

"In the middle" is made certain, not left to timing: the test holds a lock on one member's
balance row, so the job commits its first batches and then waits on that row; the worker is
killed while it waits. For webhooks, the receiver holds the first request unanswered.
"""

from __future__ import annotations

import asyncio
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
TIMEOUT = 60.0


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            pass
        with Connection(RABBITMQ_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@dataclass
class Worker:
    process: WorkerProcess
    celery: Celery
    redelivers: bool
    kills: list[str] = field(default_factory=list)

    def send(self, task: str, **kwargs: Any) -> None:
        self.celery.send_task(task, kwargs=kwargs, queue=self.process.queue)

    def kill_and_restart(self, during: str) -> None:
        self.process.kill()
        self.kills.append(during)
        self.process.start_and_wait()


@pytest.fixture(scope="module")
def worker(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    data_dir = tmp_path_factory.mktemp("chaos-worker")
    if rabbitmq_answers():
        broker_url: str | None = RABBITMQ_URL
    elif redis_answers():
        broker_url = REDIS_URL
    else:
        broker_url = None
    queue = f"chaos-{uuid.uuid4().hex[:12]}"
    env = lms_env(database_url, LMS_DATA_DIR=str(data_dir),
                  LMS_SYSTEM_ACCOUNT_SHARDS=str(SHARDS))
    if broker_url:
        env["LMS_BROKER_URL"] = broker_url
    process = WorkerProcess(env, data_dir / "worker.log", queue)
    celery = create_celery(Settings(broker_url=broker_url, data_dir=data_dir))
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


async def idle(worker: Worker) -> None:
    """Wait until the worker has run everything sent so far: it takes one task at a time in
    order, so once a cheap task sent now has succeeded, the earlier ones have run."""
    marker = worker.celery.send_task("ledger.expire_holds", kwargs={"limit": 1},
                                     queue=worker.process.queue).id

    async def ran() -> bool:
        return f"[{marker}] succeeded" in worker.process.output()
    await eventually(ran, "the marker task", worker)


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


async def test_hold_expiry_killed_midway_finishes_after_restart_once(
        worker: Worker, db: Database, in_ledger: LedgerRunner[Any]) -> None:
    holds_count, per_run = budget("CHAOS_HOLDS", 40), 5
    # A day in the past, a second apart: these come first in the job's order (expiry, id),
    # before any due hold another test left.
    first_due = datetime.now(UTC) - timedelta(days=1)

    async def make(ledger: Ledger) -> list[tuple[int, int]]:
        made = []
        for n in range(holds_count):
            account = await ledger.open_account(AccountKind.MEMBER)
            await ledger.credit(account, 1000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
            hold = await ledger.create_hold(account, 400, actor=TEST_ACTOR,
                                            expires_at=first_due + timedelta(seconds=n))
            made.append((account, hold.id))
        return made

    made = await in_ledger(make)
    accounts, holds = [a for a, _ in made], [h for _, h in made]
    expired_sql = "SELECT count(*) FROM holds WHERE id = ANY(:h) AND status = 'expired'"
    blocked_at = holds_count // 2

    async with row_lock(db, accounts[blocked_at]) as waited_on:
        worker.send("ledger.expire_holds", limit=per_run)
        await eventually(waited_on, "the job to reach the locked account", worker)
        before = await count(db, expired_sql, h=holds)
        await asyncio.to_thread(worker.kill_and_restart, "hold expiry")
    assert before == blocked_at // per_run * per_run  # the batches before the lock, no more
    assert await count(db, expired_sql, h=holds) == before  # the killed batch rolled back

    if not worker.redelivers:
        worker.send("ledger.expire_holds", limit=per_run)  # the beat's next run

    async def all_expired() -> bool:
        return await count(db, expired_sql, h=holds) == holds_count
    await eventually(all_expired, "every hold to expire", worker)
    await idle(worker)
    events = Counter(r.hold for r in await rows(
        db, "SELECT (payload->>'holdId')::bigint AS hold FROM outbox_events "
            "WHERE topic = 'hold.expired' AND (payload->>'holdId')::bigint = ANY(:h)",
        h=holds))
    assert events == Counter(dict.fromkeys(holds, 1))
    balances = {r.account_id: (r.posted, r.held) for r in await rows(
        db, "SELECT account_id, posted, held FROM balances WHERE account_id = ANY(:a) "
            "AND unit = 'MILES'", a=accounts)}
    assert balances == dict.fromkeys(accounts, (1000, 0))


async def test_lot_expiry_killed_midway_finishes_after_restart_once(
        worker: Worker, db: Database, in_ledger: LedgerRunner[Any]) -> None:
    # More accounts than one batch of the job, so that it commits a batch and waits in the
    # next, on the lock of the last account (due accounts are taken in the order of their
    # ids, and these are the newest).
    accounts_count = budget("CHAOS_LOT_ACCOUNTS", EXPIRY_BATCH + 50)
    due_at = datetime.now(UTC) - timedelta(days=1)

    async def make(ledger: Ledger) -> list[int]:
        made = []
        for _ in range(accounts_count):
            account = await ledger.open_account(AccountKind.MEMBER)
            await ledger.credit(account, 700, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                                lot_expires_at=due_at)
            await ledger.credit(account, 300, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
            made.append(account)
        return made

    accounts = await in_ledger(make)
    expired_sql = ("SELECT count(*) FROM balances WHERE account_id = ANY(:a) "
                   "AND unit = 'MILES' AND posted = 300")
    blocked = accounts[-1]

    async with row_lock(db, blocked) as waited_on:
        worker.send("tiers.expire_lots")
        await eventually(waited_on, "the job to reach the locked account", worker)
        before = await stable(db, expired_sql, a=accounts)
        await asyncio.to_thread(worker.kill_and_restart, "lot expiry")
    assert 0 < before < accounts_count
    assert await count(db, expired_sql, a=accounts) == before

    if not worker.redelivers:
        worker.send("tiers.expire_lots")

    async def all_expired() -> bool:
        return await count(db, expired_sql, a=accounts) == accounts_count
    await eventually(all_expired, "every due lot to expire", worker)
    await idle(worker)
    entries = Counter(r.account_id for r in await rows(
        db, "SELECT p.account_id FROM postings p JOIN journal_entries e ON e.id = p.entry_id "
            "WHERE e.kind = 'expiry' AND p.account_id = ANY(:a)", a=accounts))
    assert entries == Counter(dict.fromkeys(accounts, 1))
    assert await count(db, "SELECT count(*) FROM balances WHERE account_id = ANY(:a) "
                           "AND unit = 'MILES' AND (posted, held) <> (300, 0)",
                       a=accounts) == 0


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


async def test_webhook_delivery_killed_midway_reaches_the_partner_with_one_id(
        worker: Worker, db: Database, client: httpx.AsyncClient,
        settings: Settings) -> None:
    admin = await admin_headers(db, settings)
    events = budget("CHAOS_WEBHOOKS", 4)
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
        for delivery_id, attempts in leased:
            worker.send("webhooks.deliver", delivery_id=delivery_id, attempts=attempts)

        await asyncio.to_thread(endpoint.arrived.wait, TIMEOUT)
        assert endpoint.arrived.is_set(), worker.process.output()[-4000:]
        await asyncio.to_thread(worker.kill_and_restart, "webhook delivery")
        endpoint.gate.set()
        if not worker.redelivers:
            # The lease runs out and the sweep hands the delivery over again.
            for delivery_id, attempts in leased:
                worker.send("webhooks.deliver", delivery_id=delivery_id, attempts=attempts)

        async def delivered() -> bool:
            return await count(db, "SELECT count(*) FROM webhook_deliveries WHERE "
                                   "partner_id = :p AND status = 'delivered'",
                               p=shop.id) == events
        await eventually(delivered, "every webhook to be delivered", worker)
        await idle(worker)

    # At least once, always under the delivery's one id and with the same body: the
    # request the worker died waiting on was sent again, and nothing else was.
    ids = [webhook_id(d) for d in mine]
    got = Counter(i for i, _, _ in endpoint.received)
    assert got == Counter(dict.fromkeys(ids, 1)) + Counter([endpoint.received[0][0]])
    bodies: dict[str, set[bytes]] = {}
    for i, body, _ in endpoint.received:
        bodies.setdefault(i, set()).add(body)
    assert all(len(b) == 1 for b in bodies.values())
    assert all(ok for _, _, ok in endpoint.received)
    state = [(r.status, r.attempts) for r in await rows(
        db, "SELECT status, attempts FROM webhook_deliveries WHERE partner_id = :p",
        p=shop.id)]
    # The killed attempt's record rolled back with its transaction.
    assert state == [("delivered", 1)] * events
    print(f"\nchaos worker-kill: killed during {', '.join(worker.kills)}; "
          f"{'redelivered by the broker' if worker.redelivers else 'sent again'}; "
          f"{len(endpoint.received)} webhook requests for {events} deliveries")

