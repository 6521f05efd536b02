"""The world the fuzzer runs in: a database of its own with the demo programme loaded, the
API served by uvicorn in a process of its own, the fake payment provider, and a
credential for every role.

A database of its own because the fuzzer, signed in as an admin, really changes the
programme (tiers, earn rules, limits, reason codes): the rest of the suite must not see that.
A process of its own so that generating and checking cases does not compete with serving
them for one interpreter lock.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from lms import demo, migrate
from lms.app import create_app
from lms.db import Database, raw_connection
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import SystemAccounts
from lms.ledger.verify import verify
from lms.partners.schemas import ApiKeyCreate
from lms.partners.service import PartnerService
from lms.payments.fake_provider import create_provider_app
from lms.redemption.service import INTERNAL_PARTNER
from lms.settings import Settings
from tests.conftest import drop_database, recreate_database, server_url
from tests.payments.support import ThreadedServer, free_port

T = TypeVar("T")

# Every role the API knows ("anonymous": no credentials at all). The partner's API key has
# every scope; the flight feed's only ``flights``.
ROLES = ("anonymous", "member", "partner", "flight_feed", "agent", "supervisor", "marketer",
         "admin")
STAFF_ROLES = ("agent", "supervisor", "marketer", "admin")
MEMBER_EMAIL = demo.MEMBERS[0].email
WEBHOOK_SECRET = "fuzz-webhook-secret"


@dataclass(frozen=True)
class World:
    base_url: str
    database_url: str
    # role -> request headers carrying its credentials
    headers: dict[str, dict[str, str]]

    def sign_in(self, role: str) -> dict[str, str]:
        """A fresh access token for ``role``, for operations that end the one they are given
        (POST /v1/auth/logout); the fixed credentials of the other roles."""
        if role == "member":
            url, email, password = "/v1/auth/token", MEMBER_EMAIL, demo.MEMBER_PASSWORD
        elif role in STAFF_ROLES:
            url, email, password = ("/v1/staff/auth/token", f"{role}@example.com",
                                    demo.STAFF_PASSWORD)
        else:
            return self.headers[role]
        response = httpx.post(self.base_url + url, json={"email": email, "password": password},
                              timeout=60)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['accessToken']}"}


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine in a thread of its own: the session's event loop belongs to pytest."""
    out: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        async def main() -> T:
            return await fn()
        try:
            out.append(asyncio.run(main()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


async def load(settings: Settings) -> str:
    """What ``lms db upgrade`` and ``lms demo load`` do after the migrations, and a
    flight-feed client: the airline's own key with only the ``flights`` scope."""
    db = Database.from_settings(settings)
    system = SystemAccounts(settings.system_account_shards)
    try:
        async def ensure(session: AsyncSession) -> None:
            await system.ensure(LedgerRepository(await raw_connection(session)))

        await db.transaction(ensure)
        await demo.load(db, settings)

        async def feed_key(session: AsyncSession) -> str:
            issued = await PartnerService(session, system).issue_key(
                INTERNAL_PARTNER, ApiKeyCreate(scopes=["flights"]))
            return issued.key

        return await db.transaction(feed_key)
    finally:
        await db.dispose()


async def _violations(url: str) -> list[str]:
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.engine.connect() as conn:
            return [str(v) for v in await verify(conn)]
    finally:
        await db.dispose()


def ledger_violations(world: World) -> list[str]:
    return run_async(lambda: _violations(world.database_url))


def _serve(settings: Settings, port: int) -> None:
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


class ApiProcess:
    """The API served by uvicorn in a process of its own, forked from this one so that it
    starts without importing everything again."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        # A small pool: the database server is shared with the rest of the suite.
        settings = settings.model_copy(update={"db_pool_size": 4, "db_max_overflow": 4,
                                               "log_level": "WARNING"})
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(settings, port), name="fuzz-api", daemon=True)
        self.process.start()

    def wait_until_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"the API exited with {self.process.exitcode}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the API did not answer /health in time")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(timeout=15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


@contextmanager
def fuzz_world(base: Settings, data_dir: Path,
               background: list[threading.Thread]) -> Iterator[World]:
    name = f"lms_test_{os.getpid()}_fuzz"
    provider_port, api_port = free_port(), free_port()
    provider_url = f"http://127.0.0.1:{provider_port}"
    base_url = f"http://127.0.0.1:{api_port}"
    url = recreate_database(server_url(), name)
    settings = base.model_copy(update={
        "database_url": url, "data_dir": data_dir, "public_base_url": base_url,
        "payment_provider_url": provider_url, "payment_webhook_secret": WEBHOOK_SECRET})
    try:
        with ExitStack() as stack:
            migrate.upgrade(url)
            feed_key = run_async(lambda: load(settings))
            api = ApiProcess(settings, api_port)
            stack.callback(api.stop)
            stack.enter_context(ThreadedServer(
                create_provider_app(WEBHOOK_SECRET, provider_url), provider_port))
            api.wait_until_healthy()
            partner_key = (data_dir / "demo-partner-key").read_text().strip()
            headers: dict[str, dict[str, str]] = {
                "anonymous": {},
                "partner": {"Authorization": f"Bearer {partner_key}"},
                "flight_feed": {"Authorization": f"Bearer {feed_key}"},
            }
            world = World(base_url, url, headers)
            for role in ("member", *STAFF_ROLES):
                headers[role] = world.sign_in(role)
            yield world
    finally:
        dropping = threading.Thread(target=drop_database, args=(url,), name="drop-fuzz-db")
        dropping.start()
        background.append(dropping)
