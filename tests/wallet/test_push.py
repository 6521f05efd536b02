"""Balance changes reach devices: outbox relay -> wallet consumer -> sync task -> APNs over
HTTP/2 (a local server with its own CA that checks the provider JWT)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from lms.db import Database
from lms.settings import PROJECT_ROOT, Settings
from lms.wallet.sync import sync_due
from lms.worker import create_celery
from tests.conftest import LedgerRunner
from tests.test_worker import REDIS_URL, Worker, redis_answers, wait_until_ready
from tests.wallet.conftest import (
    KEY_ID,
    PASS_TYPE,
    TEAM_ID,
    Card,
    credit,
    new_card,
    pass_state,
    registry_with,
    relay_to,
)
from tests.wallet.servers import ApnsRequest, FakeApns, ServerThread

APNS = tuple[FakeApns, ServerThread, Path]


async def register_devices(client: httpx.AsyncClient, card: Card, count: int) -> list[str]:
    tokens = [uuid.uuid4().hex * 2 for _ in range(count)]
    for token in tokens:
        response = await client.post(
            f"/v1/passkit/v1/devices/{uuid.uuid4().hex}/registrations/{PASS_TYPE}/"
            f"{card.serial}", json={"pushToken": token}, headers=card.auth)
        assert response.status_code == 201
    return tokens


def pushes_to(fake: FakeApns, tokens: list[str]) -> list[ApnsRequest]:
    return [r for r in fake.received() if r.push_token in tokens]


def assert_valid_push(request: ApnsRequest) -> None:
    assert request.http_version == "2"
    assert request.path.startswith("/3/device/")
    assert request.body == b"{}"
    assert request.headers["apns-topic"] == PASS_TYPE
    assert request.headers["apns-push-type"] == "background"
    assert request.claims is not None and request.claims["iss"] == TEAM_ID
    assert request.jwt_header is not None
    assert request.jwt_header["alg"] == "ES256" and request.jwt_header["kid"] == KEY_ID


async def push_tokens(db: Database, pass_id: int) -> set[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT push_token FROM wallet_registrations WHERE pass_id = :p"), {"p": pass_id})
        return {r.push_token for r in rows}


async def test_a_burst_of_credits_is_one_push_per_device(
        wclient: httpx.AsyncClient, db: Database, wallet_settings: Settings,
        in_ledger: LedgerRunner[Any], apns_server: APNS) -> None:
    fake = apns_server[0]
    card = await new_card(wclient, db)
    tokens = await register_devices(wclient, card, 2)
    for miles in (100, 200, 300):
        await credit(in_ledger, card, miles)

    enqueued = await relay_to(db, wallet_settings)
    row = await pass_state(db, card.serial)
    # Other tests' events may be relayed too; this pass is enqueued once for the burst.
    assert [pass_id for pass_id, _ in enqueued].count(row.id) == 1

    report = await sync_due(db, wallet_settings, pass_id=row.id)
    assert report.pushes == 2
    received = pushes_to(fake, tokens)
    assert sorted(r.push_token for r in received) == sorted(tokens)
    for request in received:
        assert_valid_push(request)

    # Nothing more is due; a change inside the window is pushed when the window ends.
    assert (await sync_due(db, wallet_settings, pass_id=row.id)).passes == 0
    await credit(in_ledger, card, 50)
    [wait] = [w for p, w in await relay_to(db, wallet_settings) if p == row.id]
    assert wait > wallet_settings.wallet_push_window_seconds - 5
    assert (await sync_due(db, wallet_settings, pass_id=row.id)).passes == 0
    assert len(pushes_to(fake, tokens)) == 2


async def test_gone_device_is_unregistered_and_failures_retried(
        wclient: httpx.AsyncClient, db: Database, wallet_settings: Settings,
        in_ledger: LedgerRunner[Any], apns_server: APNS) -> None:
    fake = apns_server[0]
    card = await new_card(wclient, db)
    kept, gone, busy = await register_devices(wclient, card, 3)
    fake.answers[gone] = 410
    fake.answers[busy] = 503
    await credit(in_ledger, card, 100)
    await relay_to(db, wallet_settings)
    row = await pass_state(db, card.serial)

    report = await sync_due(db, wallet_settings, pass_id=row.id)
    assert (report.pushes, report.gone, report.retries) == (1, 1, 1)
    assert await push_tokens(db, row.id) == {kept, busy}
    retry = await pass_state(db, card.serial)
    assert retry.sync_due_at is not None and retry.sync_attempts == 1

    # Once APNs answers again, the retry (picked up by the periodic sync) succeeds.
    fake.answers[busy] = 200
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE wallet_passes SET sync_due_at = now() WHERE id = :p"),
                           {"p": row.id})
    report = await sync_due(db, wallet_settings)
    assert report.pushes >= 2
    done = await pass_state(db, card.serial)
    assert done.sync_due_at is None and done.sync_attempts == 0
    assert len([r for r in pushes_to(fake, [busy]) if r.push_token == busy]) == 2


async def test_wrong_key_is_refused_by_apns(wclient: httpx.AsyncClient, db: Database,
                                            wallet_settings: Settings,
                                            in_ledger: LedgerRunner[Any],
                                            apns_server: APNS) -> None:
    """The local APNs really checks the JWT: another team's token is refused (403), which
    is not retried and leaves the registration alone."""
    fake = apns_server[0]
    card = await new_card(wclient, db)
    tokens = await register_devices(wclient, card, 1)
    await credit(in_ledger, card, 10)
    await relay_to(db, wallet_settings)
    row = await pass_state(db, card.serial)
    other = wallet_settings.model_copy(update={"apns_team_id": "OTHERTEAM1"})
    report = await sync_due(db, other, pass_id=row.id)
    assert (report.pushes, report.retries) == (0, 0)
    [request] = pushes_to(fake, tokens)
    assert request.claims is not None and request.claims["iss"] == "OTHERTEAM1"
    assert await push_tokens(db, row.id) == set(tokens)


@pytest.fixture(scope="module")
def wallet_worker(database_url: str, wallet_settings: Settings,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """``lms worker`` configured, through the environment, for the local APNs."""
    data_dir = tmp_path_factory.mktemp("wallet-worker")
    broker_url = REDIS_URL if redis_answers() else None
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env |= {"LMS_DATABASE_URL": database_url, "LMS_DATA_DIR": str(data_dir),
            "LMS_LOG_LEVEL": "INFO",
            "LMS_APPLE_PASS_TYPE_IDENTIFIER": PASS_TYPE,
            "LMS_APPLE_TEAM_IDENTIFIER": TEAM_ID,
            "LMS_APNS_HOST": wallet_settings.apns_host,
            "LMS_APNS_KEY": str(wallet_settings.apns_key),
            "LMS_APNS_KEY_ID": KEY_ID,
            "LMS_APNS_CA_BUNDLE": str(wallet_settings.apns_ca_bundle)}
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
            with redis.Redis.from_url(broker_url) as client:
                client.delete(queue, *client.scan_iter(match=f"_kombu.binding*.{queue}"))


async def test_credit_reaches_devices_through_the_worker(
        wclient: httpx.AsyncClient, db: Database, wallet_settings: Settings,
        in_ledger: LedgerRunner[Any], apns_server: APNS, wallet_worker: Worker) -> None:
    from lms.outbox.relay import relay
    from lms.wallet.sync import WalletConsumer

    fake = apns_server[0]
    card = await new_card(wclient, db)
    tokens = await register_devices(wclient, card, 2)
    await credit(in_ledger, card, 1200)
    await credit(in_ledger, card, 34)

    def enqueue(pass_id: int, countdown: float) -> None:
        wallet_worker.celery.send_task("wallet.sync_pass", kwargs={"pass_id": pass_id},
                                       queue=wallet_worker.queue, countdown=countdown)

    await relay(db, registry_with(WalletConsumer(wallet_settings, enqueue)))
    deadline = time.monotonic() + 20
    while len(pushes_to(fake, tokens)) < 2:
        if time.monotonic() > deadline:
            pytest.fail("the worker sent no push")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # nothing more may follow
    received = pushes_to(fake, tokens)
    assert sorted(r.push_token for r in received) == sorted(tokens)
    for request in received:
        assert_valid_push(request)


def test_worker_relay_knows_the_wallet_consumer(tmp_path: Path) -> None:
    """In a worker (which imports every task module) the relay hands events to the wallet.
    Checked in a fresh interpreter, so that this process's relay stays without it."""
    check = ("from lms.worker import app; app.loader.import_default_modules(); "
             "from lms.outbox.relay import consumers; from lms.wallet.sync import "
             "WalletConsumer; import sys; sys.exit(0 if any(isinstance(c, WalletConsumer) "
             "for c in consumers.for_topic('miles.credited')) else 3)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env["LMS_DATA_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", check], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
