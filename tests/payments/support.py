"""Real servers for the payment tests: the fake provider and the API, each a uvicorn server on a
free local port in a thread of its own, so that the provider's signed webhooks reach the API
over HTTP exactly as in production. Fixtures are imported by the conftest of tests/payments
and tests/purchases."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from sqlalchemy import text

from lms.accrual.programme import demo_programme_path, parse
from lms.app import create_app
from lms.db import Database, raw_connection
from lms.payments import signature
from lms.payments.fake_provider import create_provider_app
from lms.purchases.repository import store_rule
from lms.settings import Settings
from tests.factories import bearer

SECRET = "test-webhook-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadedServer:
    def __init__(self, app: Any, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass(frozen=True)
class FakeProvider:
    url: str
    secret: str


@pytest.fixture(scope="session")
def provider() -> Iterator[FakeProvider]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ThreadedServer(create_provider_app(SECRET, url), port):
        yield FakeProvider(url, SECRET)


@pytest.fixture(scope="session")
def live_settings(settings: Settings, provider: FakeProvider) -> Settings:
    return settings.model_copy(update={
        "public_base_url": f"http://127.0.0.1:{free_port()}",
        "payment_provider_url": provider.url, "payment_webhook_secret": SECRET})


@pytest.fixture(scope="session")
def live_api(live_settings: Settings, db: Database) -> Iterator[str]:
    port = int(live_settings.public_base_url.rsplit(":", 1)[1])
    with ThreadedServer(create_app(live_settings), port):
        yield live_settings.public_base_url


@pytest.fixture(scope="session")
async def purchase_rules(db: Database) -> None:
    """The demo programme's purchase rules (only those: its earn rules and promotions would
    change what other tests credit)."""
    programme = parse(demo_programme_path().read_text())

    async def work(session: Any) -> None:
        conn = await raw_connection(session)
        for kind, since, body in programme.purchase_rules:
            await store_rule(conn, kind, since, body, "tests")

    await db.transaction(work)


@pytest.fixture
async def api(live_api: str, purchase_rules: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as client:
        yield client


def payment_id(purchase: dict[str, Any]) -> str:
    url: str = purchase["paymentUrl"]
    return url.rsplit("/", 1)[1]


async def buy_miles(api: httpx.AsyncClient, token: str, miles: int,
                    key: str | None = None) -> httpx.Response:
    return await api.post("/v1/me/mile-purchases", json={"miles": miles},
                          headers=bearer(token) | {"Idempotency-Key": key or str(uuid.uuid4())})


async def provider_completes(provider: FakeProvider, purchase: dict[str, Any],
                             **body: Any) -> dict[str, Any]:
    """The provider finishes the payment (default: succeeded) and reports the answer its
    webhook got from the API."""
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{provider.url}/v1/payments/{payment_id(purchase)}/complete", json=body)
    assert response.status_code == 200, response.text
    delivery: dict[str, Any] = response.json()
    return delivery


async def provider_resends(provider: FakeProvider, purchase: dict[str, Any]
                           ) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{provider.url}/v1/payments/{payment_id(purchase)}/resend")
    assert response.status_code == 200, response.text
    delivery: dict[str, Any] = response.json()
    return delivery


async def post_webhook(api: httpx.AsyncClient, body: dict[str, Any], *,
                       secret: str = SECRET, timestamp: int | None = None,
                       header: str | None = None) -> httpx.Response:
    raw = msgspec.json.encode(body)
    signed = header if header is not None else signature.sign(secret, raw, timestamp)
    return await api.post("/v1/payments/webhook", content=raw, headers={
        "Content-Type": "application/json", signature.HEADER: signed})


async def miles_of(db: Database, account_id: int) -> int:
    async def read(session: Any) -> int:
        value: int = (await session.execute(text(
            "SELECT posted FROM balances WHERE account_id = :a AND unit = 'MILES'"),
            {"a": account_id})).scalar_one()
        return value

    result: int = await db.transaction(read)
    return result


async def purchase_entries(db: Database, reference: str) -> int:
    async def read(session: Any) -> int:
        value: int = (await session.execute(text(
            "SELECT count(*) FROM journal_entries WHERE source = 'purchase' "
            "AND external_ref = :r"), {"r": reference})).scalar_one()
        return value

    result: int = await db.transaction(read)
    return result


async def payment_rows(db: Database, reference: str) -> list[tuple[str, str]]:
    async def read(session: Any) -> list[tuple[str, str]]:
        rows = (await session.execute(text(
            "SELECT status, outcome FROM payment_events WHERE reference = :r ORDER BY id"),
            {"r": reference})).all()
        return [(r.status, r.outcome) for r in rows]

    result: list[tuple[str, str]] = await db.transaction(read)
    return result
